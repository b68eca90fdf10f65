/**
 * `ebadge types` and `ebadge fields TYPE`: the message catalogue as the codec knows it, read from its schema tables,
 * so what they print is what `send`, `request` and `validate` accept.
 */
import { type MessageType, SCHEMAS } from '../codec/index.js';
import { jsonSchemaOf } from '../codec/json-schema.js';
import type { FieldType } from '../codec/schema.js';
import { type Io, UsageError } from './common.js';

interface FieldInfo {
  type: FieldType<unknown>;
  optional: boolean;
  nullable: boolean;
}

const fieldsOf = (type: MessageType): Record<string, FieldInfo> =>
  (SCHEMAS[type] as unknown as { fields: Record<string, FieldInfo> }).fields;

/** One line per type: its name, then its fields, optional ones in brackets. */
export function types(args: string[], io: Io): number {
  if (args.length > 0) throw new UsageError(`types takes no arguments, found "${args[0] as string}"`);
  for (const type of Object.keys(SCHEMAS) as MessageType[]) {
    const names = Object.entries(fieldsOf(type)).map(([k, f]) => (f.optional ? `[${k}]` : k));
    io.out(`${type.padEnd(28)} ${names.join(' ')}`.trimEnd());
  }
  return 0;
}

/** The fields of one type: name, value type, required or optional, null allowed or not, and what the value means. */
export function fields(args: string[], io: Io): number {
  const [type, ...rest] = args;
  if (type === undefined) throw new UsageError('fields needs a message TYPE (ebadge types lists them)');
  if (rest.length > 0) throw new UsageError(`fields takes one TYPE, found also "${rest[0] as string}"`);
  if (!Object.hasOwn(SCHEMAS, type)) throw new UsageError(`unknown message type "${type}" (ebadge types lists them)`);
  const entries = Object.entries(fieldsOf(type as MessageType));
  if (entries.length === 0) io.out(`${type} has no fields besides msg`);
  for (const [name, f] of entries) {
    const s = jsonSchemaOf(f.type);
    const notes = [
      f.optional ? 'optional' : 'required',
      ...(f.nullable ? ['null allowed'] : []),
      ...(typeof s['description'] === 'string' ? [s['description']] : []),
      ...(typeof s['minimum'] === 'number' ? [`>= ${s['minimum']}`] : []),
      ...(typeof s['maximum'] === 'number' ? [`<= ${s['maximum']}`] : []),
    ];
    io.out(`${name.padEnd(24)} ${f.type.name.padEnd(16)} ${notes.join(', ')}`);
  }
  io.out('ext_* fields of any JSON value are allowed in every type and kept as they are');
  return 0;
}
