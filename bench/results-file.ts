/**
 * bench/RESULTS.md is shared by every benchmark: each one owns some sections and replaces only those, leaving every
 * other byte of the file as it was. This module is the one writer of that file.
 *
 * A section runs from its heading line (`## ...`, or the `# ...` title block at the top) to the next `# ` or `## `
 * heading, or to the end of the file; a subsection (`### ...`) runs to the next heading of level 3 or less, or to the
 * end of its section. Headings are matched as whole lines; lines inside ``` fences are not headings. What a benchmark
 * writes ends with one newline, plus a blank line when more follows.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_FILE = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));

/**
 * Where a benchmark writes: the file that the environment variable `name` gives (relative to the working directory),
 * nowhere (null) when it is `-`, else RESULTS_FILE.
 */
export function resultsPath(name: string): string | null {
  const value = process.env[name];
  if (value === '-') return null;
  return value === undefined || value === '' ? RESULTS_FILE : resolve(value);
}

/**
 * Replaces the section that starts with the line `heading` (`# ` or `## `) by `section`, which must start with that
 * line. An absent section is appended at the end of the file, an absent `# ` title inserted at its start; a missing
 * file is created. `file` null writes nothing.
 */
export function replaceSection(heading: string, section: string, file: string | null = RESULTS_FILE): void {
  if (file === null) return;
  checkHeading(heading, section, 1, 2);
  const text = read(file);
  const old = find(text, heading, 0, text.length);
  const at = old ?? (level(heading) === 1 ? { start: 0, end: 0 } : { start: text.length, end: text.length });
  writeFileSync(file, put(text, at.start, at.end, section));
}

export interface SubsectionOptions {
  /** The section's text between its heading and its first subsection: written when given, else kept as it is. */
  readonly intro?: string;
  /** A new subsection goes before the one with this heading when the section has it, else at the section's end. */
  readonly before?: string;
  /** Only add the subsection when the section has none with its heading; an existing one is kept as it is. */
  readonly ifAbsent?: boolean;
}

/**
 * Replaces, inside the section `heading`, the subsection that starts with the first line of `subsection` (a `### `
 * heading), or adds it; the section is appended to the file when absent. Nothing outside that subsection changes,
 * apart from the section's intro when `options.intro` is given. `file` null writes nothing.
 */
export function replaceSubsection(
  heading: string,
  subsection: string,
  file: string | null = RESULTS_FILE,
  options: SubsectionOptions = {},
): void {
  if (file === null) return;
  const subheading = subsection.split('\n', 1)[0] ?? '';
  checkHeading(subheading, subsection, 3, 3);
  checkHeading(heading, heading, 2, 2);
  const head = options.intro === undefined ? heading : `${heading}\n\n${options.intro}`;
  let text = read(file);
  let section = find(text, heading, 0, text.length);
  if (section === undefined) {
    text = put(text, text.length, text.length, head);
  } else if (options.intro !== undefined) {
    const first = headings(text, section.start, section.end).find((h) => h.level === 3);
    text = put(text, section.start, first?.at ?? section.end, head);
  }
  section = find(text, heading, 0, text.length) as Span;
  const old = find(text, subheading, section.start, section.end);
  if (old !== undefined && options.ifAbsent === true) {
    writeFileSync(file, text);
    return;
  }
  const before = options.before === undefined ? undefined : find(text, options.before, section.start, section.end);
  const at =
    old ??
    (before === undefined ? { start: section.end, end: section.end } : { start: before.start, end: before.start });
  writeFileSync(file, put(text, at.start, at.end, subsection));
}

interface Span {
  readonly start: number;
  readonly end: number;
}

interface Heading {
  readonly level: number;
  readonly line: string;
  readonly at: number;
}

function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

function level(heading: string): number {
  return /^(#+) /.exec(heading)?.[1]?.length ?? 0;
}

/** `heading` is one heading line of a level in [min, max], and `text` starts with it. */
function checkHeading(heading: string, text: string, min: number, max: number): void {
  const n = level(heading);
  if (n < min || n > max || heading.includes('\n') || heading !== heading.trimEnd())
    throw new Error(`not a heading of level ${min === max ? min : `${min} to ${max}`}: ${JSON.stringify(heading)}`);
  if (text !== heading && !text.startsWith(`${heading}\n`))
    throw new Error(`the text written under ${heading} must start with that heading line`);
}

/** The headings (whole lines, outside ``` fences) that start in text[from, to). */
function headings(text: string, from: number, to: number): Heading[] {
  const out: Heading[] = [];
  let fenced = false;
  for (let at = 0; at < to; ) {
    const nl = text.indexOf('\n', at);
    const end = nl < 0 ? text.length : nl;
    const line = text.slice(at, end).trimEnd();
    if (line.startsWith('```')) fenced = !fenced;
    else if (!fenced && at >= from) {
      const n = level(line);
      if (n > 0) out.push({ level: n, line, at });
    }
    at = end + 1;
  }
  return out;
}

/** The span in text[from, to) of the block under the line `heading`: up to the next heading of its level or less. */
function find(text: string, heading: string, from: number, to: number): Span | undefined {
  const all = headings(text, from, to);
  const i = all.findIndex((h) => h.line === heading);
  const own = all[i];
  if (own === undefined) return undefined;
  const stop = Math.max(own.level, 2); // a `# ` title block ends at the first `## ` section
  return { start: own.at, end: all.slice(i + 1).find((h) => h.level <= stop)?.at ?? to };
}

/**
 * `text` with text[start, end) replaced by `block`, which then ends with one newline and, when more follows, a blank
 * line. An insertion (start === end) is separated from what precedes it by a blank line; a replacement leaves the
 * bytes outside [start, end) as they were.
 */
function put(text: string, start: number, end: number, block: string): string {
  const before = text.slice(0, start);
  const after = text.slice(end);
  const gap = start !== end || before === '' || before.endsWith('\n\n') ? '' : before.endsWith('\n') ? '\n' : '\n\n';
  return `${before}${gap}${block.trimEnd()}\n${after === '' ? '' : '\n'}${after}`;
}
