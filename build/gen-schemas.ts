/**
 * Writes a JSON Schema (draft 2020-12) per eBADGE message type to dist/schemas/, from the same tables the codec
 * runs on, for implementations in other languages:   npm run schemas
 * Cross-field rules (from < to, values per resolution ...) are the codec's; JSON Schema states the field shapes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { objectSchema } from '../src/codec/json-schema.js';
import { SCHEMAS } from '../src/codec/messages.js';

const out = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'schemas');
mkdirSync(out, { recursive: true });
for (const [msg, s] of Object.entries(SCHEMAS)) {
  const schema = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `urn:ebadge:dm:3.1:${msg}`,
    title: msg,
    ...objectSchema(s.fields, { msg: { const: msg } }),
  };
  writeFileSync(resolve(out, `${msg}.schema.json`), `${JSON.stringify(schema, null, 2)}\n`);
}
process.stdout.write(`wrote ${Object.keys(SCHEMAS).length} schemas to ${out}\n`);
