/** bench/RESULTS.md is shared by every benchmark: each one replaces its own `## ...` section and leaves the rest. */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const RESULTS_FILE = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));

/** Replaces the section starting with `heading` (up to the next `## `), or appends it. */
export function replaceSection(heading: string, section: string, file = RESULTS_FILE): void {
  const text = readFileSync(file, 'utf8');
  const at = text.indexOf(heading);
  const next = at < 0 ? -1 : text.indexOf('\n## ', at + 3);
  writeFileSync(
    file,
    at < 0 ? `${text.trimEnd()}\n\n${section}` : text.slice(0, at) + section + (next < 0 ? '' : text.slice(next + 1)),
  );
}
