/**
 * Generates valid eBADGE messages of every type from the codec's own tables (via their JSON Schema fragments), with
 * a seeded PRNG, and repairs the cross-field rules the shapes cannot express (from < to, a period that is a multiple
 * of the resolution, one value per interval, ranges with min <= max).
 */

import { jsonSchemaOf } from '../../src/codec/json-schema.js';
import { type MessageType, SCHEMAS } from '../../src/codec/messages.js';
import type { JsonSchema } from '../../src/codec/schema.js';
import type { Random } from './random.js';

const BASE = Date.UTC(2015, 5, 1, 10, 0, 0);

function gen(s: JsonSchema, r: Random, depth: number): unknown {
  if (Array.isArray(s['anyOf'])) {
    const options = s['anyOf'] as JsonSchema[];
    return gen(options[r.int(options.length)] as JsonSchema, r, depth);
  }
  if (s['const'] !== undefined) return s['const'];
  if (Array.isArray(s['enum'])) return (s['enum'] as unknown[])[r.int((s['enum'] as unknown[]).length)];
  switch (s['type']) {
    case 'string':
      if (s['format'] === 'uuid')
        return Array.from({ length: 32 }, () => '0123456789abcdef'[r.int(16)])
          .join('')
          .replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
      if (s['format'] === 'date-time') {
        const iso = new Date(BASE + r.int(86_400) * 1000).toISOString();
        return r.int(3) === 0 ? iso.replace('Z', '+00:00') : iso;
      }
      if (typeof s['pattern'] === 'string' && (s['pattern'] as string).includes('\\d+\\.\\d+'))
        return `${r.int(9)}.${r.int(9)}`;
      if (typeof s['pattern'] === 'string') return `n${r.int(1e6)}_x`;
      return ['', 'a', 'boiler', 'Wärmepumpe 1', 'total.p', 'a "quoted" \\ name', '€', 'note: a:b', ':'][r.int(9)];
    case 'integer': {
      const min = typeof s['minimum'] === 'number' ? s['minimum'] : -1000;
      const max = typeof s['maximum'] === 'number' ? s['maximum'] : min + 100_000;
      return min + r.int(Math.min(max - min + 1, 100_000));
    }
    case 'number': {
      const min = typeof s['minimum'] === 'number' ? s['minimum'] : -1000;
      return min + Math.round(r.next() * 100_000) / 100;
    }
    case 'boolean':
      return r.int(2) === 0;
    case 'array':
      return Array.from({ length: depth > 2 ? 0 : r.int(4) }, () => gen(s['items'] as JsonSchema, r, depth + 1));
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = (s['properties'] ?? {}) as Record<string, JsonSchema>;
      const required = new Set((s['required'] ?? []) as string[]);
      for (const [k, p] of Object.entries(props)) if (required.has(k) || r.int(2) === 0) out[k] = gen(p, r, depth + 1);
      if (s['additionalProperties'] !== undefined) {
        for (let i = 0, n = r.int(4); i < n; i++)
          out[`sig${i}.p`] = gen(s['additionalProperties'] as JsonSchema, r, depth + 1);
      }
      return out;
    }
    default:
      return null;
  }
}

/** A valid message of `type` as plain JSON (what a peer would send). */
export function generate(type: MessageType, r: Random): Record<string, unknown> {
  const s = SCHEMAS[type];
  const props: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [k, f] of Object.entries(s.fields)) {
    props[k] = f.nullable ? { anyOf: [jsonSchemaOf(f.type), { type: 'null' }] } : jsonSchemaOf(f.type);
    if (!f.optional) required.push(k);
  }
  const m = gen({ type: 'object', properties: props, required }, r, 0) as Record<string, unknown>;
  m['msg'] = type;
  repair(m, r);
  return m;
}

function repair(m: Record<string, unknown>, r: Random): void {
  let resolution = 60;
  if (typeof m['resolution'] === 'number') {
    resolution = 1 + r.int(3600);
    m['resolution'] = resolution;
  }
  const steps = 1 + r.int(6);
  for (const [a, b] of [
    ['from', 'to'],
    ['start', 'end'],
  ] as const) {
    if (typeof m[a] === 'string' && typeof m[b] === 'string') {
      const from = BASE + r.int(86_400) * 1000;
      m[a] = new Date(from).toISOString();
      m[b] = new Date(from + steps * resolution * 1000).toISOString();
    }
  }
  if (m['interval'] === 0) m['interval'] = -1;
  const values = m['values'];
  if (Array.isArray(values)) m['values'] = Array.from({ length: steps }, (_, i) => (i % 3 === 2 ? null : i * 1.5));
  else if (values !== null && typeof values === 'object') {
    for (const k of Object.keys(values))
      (values as Record<string, unknown>)[k] = Array.from({ length: steps }, (_, i) => (i % 3 === 2 ? null : i * 0.25));
  }
  const product = m['product'];
  if (product !== null && typeof product === 'object') repair(product as Record<string, unknown>, r);
  const signals = m['signals'];
  if (Array.isArray(signals)) {
    m['signals'] = signals.map((s) => (typeof s === 'string' ? s.replace(/,/g, '') : s));
    for (const x of m['signals'] as unknown[])
      if (x !== null && typeof x === 'object' && Array.isArray((x as { range?: unknown }).range))
        (x as { range: number[] }).range = [0, 10];
  }
}
