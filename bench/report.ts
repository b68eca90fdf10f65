/**
 * Turns the outcomes into one table (medians over the valid repetitions, with ours/peer ratios), printed as aligned
 * text and written as Markdown with the run's context, the per-repetition values and every problem seen.
 */
import { minimumPublishBytes, type Scenario } from './config.js';
import type { Contender, ContenderName } from './peers/index.js';
import type { Outcome } from './runner.js';
import type { RunResult } from './scenarios.js';
import type { SizeRow } from './size.js';
import { fmt, MB, median, ratio } from './stats.js';

type Better = 'higher' | 'lower' | '';

interface Row {
  section: string;
  metric: string;
  better: Better;
  /** Per contender: the median, and how many repetitions were valid out of how many ran. */
  cells: Map<ContenderName, Cell>;
}

interface Cell {
  value: number;
  valid: number;
  ran: number;
  text?: string;
}

/** 'INVALID', with the error code when every run failed with the same one (e.g. INVALID (BUFFER_FULL)). */
function invalidText(runs: readonly Outcome[]): string {
  const codes = new Set(runs.map((o) => /\[([A-Z_0-9]+)\]/.exec(o.problems[0] ?? '')?.[1] ?? ''));
  const [code] = codes;
  return codes.size === 1 && code !== '' ? `INVALID (${code})` : 'INVALID';
}

interface Metric {
  name: string;
  better: Better;
  get(r: RunResult, s: Scenario): number;
}

const rss: Metric = {
  name: 'peak RSS MiB',
  better: 'lower',
  get: (r) => (r.maxRss > 0 ? r.maxRss : r.rssPeakSampled) / MB,
};
const cpu: Metric = { name: 'CPU µs/msg', better: 'lower', get: (r) => r.cpuUs / r.n };
const rate: Metric = { name: 'msgs/s', better: 'higher', get: (r) => r.n / (r.ms / 1000) };

function metricsFor(s: Scenario): Metric[] {
  switch (s.kind) {
    case 'publish':
    case 'consume':
      return s.size >= 64 * 1024
        ? [rate, { name: 'MiB/s', better: 'higher', get: (r) => (r.n * s.size) / MB / (r.ms / 1000) }, cpu, rss]
        : [rate, cpu, rss];
    case 'latency':
      return [
        { name: 'round trips measured (time budget)', better: '', get: (r) => r.latencyUs?.measured ?? Number.NaN },
        { name: 'p50 µs', better: 'lower', get: (r) => r.latencyUs?.p50 ?? Number.NaN },
        { name: 'p99 µs', better: 'lower', get: (r) => r.latencyUs?.p99 ?? Number.NaN },
        { name: 'CPU µs/round trip', better: 'lower', get: (r) => r.cpuUs / r.n },
        rss,
      ];
    case 'wire':
      return [
        { name: 'bytes written/publish', better: 'lower', get: (r) => r.wire?.outPerMsg ?? Number.NaN },
        { name: `AMQP minimum (spec)`, better: '', get: () => minimumPublishBytes(0, 10, s.size, 131072) },
        { name: 'bytes read/publish (confirms)', better: 'lower', get: (r) => r.wire?.inPerMsg ?? Number.NaN },
        { name: 'bytes written for connect+setup', better: 'lower', get: (r) => r.wire?.setupOut ?? Number.NaN },
      ];
  }
}

export function buildRows(
  scenarios: readonly Scenario[],
  outcomes: readonly Outcome[],
  sizes: readonly SizeRow[],
  names: readonly ContenderName[],
): Row[] {
  const rows: Row[] = [];
  for (const s of scenarios) {
    for (const m of metricsFor(s)) {
      const row: Row = { section: `${s.id} (N=${s.n})`, metric: m.name, better: m.better, cells: new Map() };
      for (const c of names) {
        const runs = outcomes.filter((o) => o.scenario === s.id && o.contender === c);
        if (runs.length === 0) continue;
        const good = runs.filter((o) => o.valid && o.result !== null).map((o) => m.get(o.result as RunResult, s));
        const ok = good.filter((v) => Number.isFinite(v));
        row.cells.set(c, {
          value: median(ok),
          valid: ok.length,
          ran: runs.length,
          ...(good.length === 0 ? { text: invalidText(runs) } : {}),
        });
      }
      rows.push(row);
    }
  }
  if (sizes.length > 0) {
    const kib = (what: 'program' | 'client', key: 'minBytes' | 'gzipBytes', metric: string): void => {
      const row: Row = {
        section: 'size: esbuild bundle (node18, minified, cjs)',
        metric,
        better: 'lower',
        cells: new Map(),
      };
      for (const z of sizes.filter((x) => x.what === what)) {
        const ok = z.status === 'ok';
        row.cells.set(z.contender, {
          value: ok ? z[key] / 1024 : Number.NaN,
          valid: ok ? 1 : 0,
          ran: 1,
          ...(ok ? {} : { text: 'INVALID' }),
        });
      }
      rows.push(row);
    };
    kib('program', 'minBytes', 'minimal program KiB min');
    kib('program', 'gzipBytes', 'minimal program KiB min+gz');
    kib('client', 'minBytes', 'client alone KiB min');
    kib('client', 'gzipBytes', 'client alone KiB min+gz');
  }
  return rows;
}

function cellText(cell: Cell | undefined): string {
  if (cell === undefined) return '-';
  if (cell.text !== undefined) return cell.text;
  if (cell.valid === 0) return '-';
  return fmt(cell.value) + (cell.valid < cell.ran ? ` (${cell.valid}/${cell.ran} valid)` : '');
}

function tableData(rows: readonly Row[], names: readonly ContenderName[]): { header: string[]; body: string[][] } {
  const peers = names.filter((n) => n !== 'ours');
  const withOurs = names.includes('ours');
  const header = ['scenario', 'metric', ...names, ...(withOurs ? peers.map((p) => `ours/${p}`) : [])];
  const body: string[][] = [];
  let last = '';
  for (const r of rows) {
    const arrow = r.better === 'higher' ? ' ↑' : r.better === 'lower' ? ' ↓' : '';
    const ours = r.cells.get('ours');
    const oursV = ours !== undefined && ours.valid > 0 ? ours.value : Number.NaN;
    body.push([
      r.section === last ? '' : r.section,
      r.metric + arrow,
      ...names.map((n) => cellText(r.cells.get(n))),
      ...(withOurs
        ? peers.map((p) => {
            const c = r.cells.get(p);
            return r.better === '' ? '' : ratio(oursV, c !== undefined && c.valid > 0 ? c.value : Number.NaN);
          })
        : []),
    ]);
    last = r.section;
  }
  return { header, body };
}

export function textTable(rows: readonly Row[], names: readonly ContenderName[]): string {
  const { header, body } = tableData(rows, names);
  // The section names go on lines of their own; the columns are sized by the metric rows only.
  const cols = [header.slice(1), ...body.map((r) => r.slice(1))];
  const width = cols[0]!.map((_, i) => Math.max(...cols.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(width[i] as number) : c.padStart(width[i] as number)))
      .join('  ')
      .trimEnd();
  const out: string[] = [line(header.slice(1)), width.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of body) {
    if (r[0] !== '') out.push('', r[0] as string);
    out.push(line(r.slice(1)));
  }
  return out.join('\n');
}

export function markdownTable(rows: readonly Row[], names: readonly ContenderName[]): string {
  const { header, body } = tableData(rows, names);
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const right = header.map((_, i) => (i < 2 ? ':--' : '--:'));
  return [header, right, ...body].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n');
}

/** Every repetition's headline number, and the problems of invalid runs. */
export function perRepMarkdown(
  scenarios: readonly Scenario[],
  outcomes: readonly Outcome[],
  names: readonly ContenderName[],
): string {
  const lines: string[] = ['| scenario | contender | per repetition |', '| :-- | :-- | :-- |'];
  const problems: string[] = [];
  for (const s of scenarios) {
    const head = metricsFor(s).find((m) => m.better !== '') as Metric;
    for (const c of names) {
      const runs = outcomes.filter((o) => o.scenario === s.id && o.contender === c);
      if (runs.length === 0) continue;
      const vals = runs.map((o) => {
        if (!o.valid || o.result === null) return 'INVALID';
        const r = o.result;
        return s.kind === 'latency' && r.latencyUs !== undefined
          ? `p50 ${fmt(r.latencyUs.p50)} / p99 ${fmt(r.latencyUs.p99)} µs over ${r.latencyUs.measured}`
          : `${fmt(head.get(r, s))} ${head.name}`;
      });
      lines.push(`| ${s.id} | ${c} | ${vals.join('; ')} |`);
      for (const o of runs)
        if (!o.valid)
          problems.push(`- ${s.id} / ${c} / rep ${o.rep}: ${o.problems.map((p) => p.split('\n')[0]).join('; ')}`);
    }
  }
  return (
    lines.join('\n') +
    (problems.length > 0 ? `\n\nInvalid runs (not counted):\n\n${problems.join('\n')}` : '\n\nEvery run was valid.')
  );
}

export interface Context {
  scenarios: readonly Scenario[];
  command: string;
  date: string;
  node: string;
  rabbitmq: string;
  source: string;
  machine: string[];
  mode: string[];
  contenders: readonly Contender[];
  skipped: readonly string[];
  preflight: readonly string[];
  sizes: readonly SizeRow[];
}

/** The sections of RESULTS.md that amqp.ts owns, by heading: the title block at the top and the per-repetition table. */
export const RESULTS_TITLE = '# AMQP client benchmark results';
export const PER_REPETITION = '## Per repetition';

export function resultsMarkdown(ctx: Context, table: string, perRep: string): { title: string; perRepetition: string } {
  const sizeNotes = ctx.sizes
    .filter((z) => z.status !== 'ok')
    .map((z) => `- size ${z.contender} ${z.what}: ${z.status}`);
  const title = `${RESULTS_TITLE}

Generated by \`bench/amqp.ts\`; see bench/README.md for what each number means. Values are medians over the valid
repetitions; ↑ higher is better, ↓ lower is better; ratios are ours divided by the peer.

- Command: \`${ctx.command}\`
- Date: ${ctx.date}
- Node: ${ctx.node}
- RabbitMQ: ${ctx.rabbitmq}
- Our client: ${ctx.source}
- Contenders: ${ctx.contenders.map((c) => c.label).join(', ')}${ctx.skipped.length > 0 ? ` (skipped: ${ctx.skipped.join('; ')})` : ''}
${ctx.mode.map((m) => `- ${m}`).join('\n')}

Machine:

${ctx.machine.map((m) => `- ${m}`).join('\n')}

Pre-flight validation: ${ctx.preflight.length === 0 ? 'every contender round-tripped 200 B, 64 KiB and 1 MiB bodies correctly.' : `\n\n${ctx.preflight.map((p) => `- ${p}`).join('\n')}`}

${table}

${sizeNotes.join('\n')}

Scenarios:

${ctx.scenarios.map((s) => `- \`${s.id}\`: ${s.title}; N=${s.n}${s.warmup > 0 ? `, warm-up ${s.warmup}` : ''}${s.kind === 'latency' ? `, time budget ${s.budgetMs / 1000} s` : ''}`).join('\n')}
`;
  return { title, perRepetition: `${PER_REPETITION}\n\n${perRep}\n` };
}
