// Extracts every "Raw JSON example" of D3.1.3 into ../d3.1.3-examples.json (run from the project root:
// node test/vectors/codec/tools/extract-d313.mjs PATH/D3.1.3-data-model-final.txt; the text of the deliverable is in
// the eBADGE reference folder, shared/ebadge/). Only to regenerate the committed vectors: no test runs it.
// The PDF text breaks lines inside the JSON: a break after "-" (a hyphenated UUID) joins without a space, any other break with none either when it falls inside a string and
// with a space between tokens. Errata annotations are kept from the existing file, matched by line.
import { readFileSync, writeFileSync } from 'node:fs';

const input = process.argv[2];
if (input === undefined) {
  console.error('usage: node test/vectors/codec/tools/extract-d313.mjs PATH/D3.1.3-data-model-final.txt');
  process.exit(2);
}
const src = readFileSync(input, 'utf8').split('\n');
const out = [];
for (let i = 0; i < src.length; i++) {
  const at = src[i].search(/Raw\s+JSON\s+example:/);
  if (at < 0) continue;
  let text = '';
  let depth = 0;
  let inString = false;
  let started = false;
  let done = false;
  for (let j = i; j < src.length && !done; j++) {
    const line = j === i ? src[j].slice(src[j].indexOf('{', at)) : src[j].trim();
    if (j !== i && !started) continue;
    for (let k = 0; k < line.length; k++) {
      const c = line[k];
      text += c;
      if (inString) {
        if (c === '\\') {
          text += line[++k] ?? '';
          continue;
        }
        if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{') {
        depth++;
        started = true;
      } else if (c === '}') {
        depth--;
        if (depth === 0) {
          done = true;
          break;
        }
      }
    }
    if (!done && !inString && !text.endsWith('-')) text += ' ';
  }
  out.push({ line: i + 1, json: text });
}
let previous = [];
try {
  previous = JSON.parse(readFileSync('test/vectors/codec/d3.1.3-examples.json', 'utf8'));
} catch {
  /* first run */
}
const errata = new Map(previous.map((e) => [e.line, e.errata]));
const rows = out.map((e) => {
  let parsed = null;
  try {
    parsed = JSON.parse(e.json);
  } catch {
    /* reported below */
  }
  return { line: e.line, msg: parsed?.msg ?? null, errata: errata.get(e.line) ?? [], json: e.json };
});
writeFileSync('test/vectors/codec/d3.1.3-examples.json', `${JSON.stringify(rows, null, 2)}\n`);
for (const r of rows) console.log(r.line, r.msg ?? `NOT JSON: ${r.json.slice(0, 100)}`);
