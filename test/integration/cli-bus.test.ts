/**
 * The operator CLI on the real broker: `ebadge send`, `request` and `listen` acting as an operator entity against a
 * hub connector; `validate` on good and bad lines; and dist/ebadge.js bundled and run alone, with no node_modules.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { connect } from '../../src/amqp/index.js';
import { Connector } from '../../src/bus/index.js';
import { main, type Io } from '../../src/cli.js';
import type { Message } from '../../src/codec/index.js';
import { bundle } from '../../build/bundle.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';

const run = `${process.pid}-${Date.now().toString(36)}`;
const HUB = `heh-cli-${run}`;
const OPS = `ops-cli-${run}`;

function capture(stdin = ''): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l), stdin: async () => stdin };
}

async function cleanup(entities: string[], pairs: [string, string][]): Promise<void> {
  const conn = await connect(AMQP_URL);
  const ch = await conn.createChannel();
  for (const e of entities) for (const q of [`private-${e}-in`, `private-${e}-dead`]) await ch.queueDelete(q);
  for (const e of entities) await ch.exchangeDelete(`private-${e}-dlx`);
  for (const [a, b] of pairs) {
    await ch.exchangeDelete(`${a}-to-${b}`);
    await ch.exchangeDelete(`${b}-to-${a}`);
  }
  await conn.close();
}

const s = suite('ebadge CLI on the bus');

s(
  'send, request and listen as an operator entity; usage errors exit 2',
  timed(async () => {
    const hub = new Connector({ name: HUB, peers: [OPS], url: AMQP_URL });
    const got: Message[] = [];
    hub.onSetClock((m) => {
      got.push(m);
    });
    hub.onGetReport(async (m, ctx) => {
      await ctx.reply({
        msg: 'report',
        from: m.from,
        to: m.to,
        resolution: m.resolution,
        values: { 'total.p': [1.5, 2.5] },
      });
    });
    await hub.start();
    try {
      const common = ['--as', OPS, '--to', HUB, '--url', AMQP_URL];
      const sent = capture();
      assert.is(await main(['send', ...common, 'set_clock', 'offset=2.5'], sent), 0, sent.errors.join('\n'));
      assert.equal(sent.lines, [`sent set_clock to ${HUB}`]);

      const asked = capture();
      const code = await main(
        [
          'request',
          ...common,
          'get_report',
          'from=2026-11-26T10:00:00Z',
          'to=2026-11-26T10:30:00Z',
          'resolution=900',
          'signals=total.p',
        ],
        asked,
      );
      assert.is(code, 0, asked.errors.join('\n'));
      const reply = JSON.parse(asked.lines[0] as string) as Record<string, unknown>;
      assert.is(reply['msg'], 'report');
      assert.equal(reply['values'], { 'total.p': [1.5, 2.5] });
      assert.equal(
        got.map((m) => (m as Message<'set_clock'>).offset),
        [2.5],
      );

      const bad = capture();
      assert.is(await main(['send', ...common, 'set_clock', 'offset=soon'], bad), 2);
      assert.match(bad.errors.join('\n'), /set_clock\.offset/);
      assert.is(await main(['send', '--as', OPS, 'set_clock', 'offset=1'], capture()), 2, '--to missing');
      assert.is(await main(['send', ...common, 'launch_rockets'], capture()), 2, 'unknown type');
      assert.is(await main(['request', ...common, 'get_report', '--timeout', 'soon'], capture()), 2);

      // listen: the hub sends to the operator, the CLI prints one JSON line and stops after --count 1.
      const listened = capture();
      const listening = main(['listen', '--as', OPS, '--peer', HUB, '--url', AMQP_URL, '--count', '1'], listened);
      await new Promise((r) => setTimeout(r, 300));
      await hub.publish(OPS, { msg: 'set_smart_mode', mode: 'passive', reset: false } as Message);
      assert.is(await listening, 0, listened.errors.join('\n'));
      const line = JSON.parse(listened.lines[0] as string) as { from: string; type: string; message: { mode: string } };
      assert.equal([line.from, line.type, line.message.mode], [HUB, 'set_smart_mode', 'passive']);
    } finally {
      await hub.close();
      await cleanup([HUB, OPS], [[HUB, OPS]]);
    }
  }, 30_000),
);

s('validate: ok TYPE or error CODE PATH per line, exit 1 when any failed', async () => {
  const good = '{"msg":"response","msg_id":null,"response_code":200,"response_desc":"OK"}';
  const io = capture(`${good}\n\n{"msg":"activate"}\nnot json\n`);
  assert.is(await main(['validate', '-'], io), 1);
  assert.equal(io.lines, ['ok response', 'error 400 activate.id: required field missing', io.lines[2]]);
  assert.match(io.lines[2] as string, /^error 400 message: not valid JSON/);
  const ok = capture(`${good}\n`);
  assert.is(await main(['validate'], ok), 0);
  assert.is(await main(['validate', '/nonexistent/file'], capture()), 2);
});

s('dist/ebadge.js runs alone: no node_modules beside it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-bundle-'));
  try {
    const file = path.join(dir, 'ebadge.js');
    const { bytes: size } = await bundle('src/bin/ebadge.ts', file);
    assert.ok(size > 10_000);
    writeFileSync(
      path.join(dir, 'm.jsonl'),
      '{"msg":"get_all_prices"}\n{"msg":"get_report","from":"2015-06-01T10:00:00"}\n',
    );
    const r = spawnSync(process.execPath, [file, 'validate', 'm.jsonl'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.is(r.status, 1, r.stderr);
    assert.equal(r.stdout.trim().split('\n'), [
      'ok get_all_prices',
      'error 454 get_report.from: time zone missing in "2015-06-01T10:00:00"',
    ]);
    const help = spawnSync(process.execPath, [file, '--help'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    assert.is(help.status, 0);
    assert.match(help.stdout, /ebadge COMMAND/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

s.run();
