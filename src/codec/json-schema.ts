/**
 * The JSON Schema (draft 2020-12) of a field type or a field table, for implementations in other languages
 * (build/gen-schemas.ts), the CLI's `fields` and the tests' generators. Written from what made each type (schema.ts's
 * `by` and `arg`), in a module of its own: the hub decodes and encodes messages but never writes a schema, and its
 * bundle leaves this out.
 */
import {
  arrayOf,
  arrayOfNullable,
  boolean,
  type Fields,
  type FieldType,
  type JsonSchema,
  mapOf,
  name,
  number,
  object,
  oneOf,
  string,
  time,
  uuid,
} from './schema.js';

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The JSON Schema of one field type. */
export function jsonSchemaOf(t: FieldType<unknown>): JsonSchema {
  const arg = t.arg as never;
  switch (t.by as unknown) {
    case string: {
      const opts = arg as { max?: number; pattern?: RegExp };
      return {
        type: 'string',
        maxLength: opts.max ?? 65_536,
        ...(opts.pattern ? { pattern: opts.pattern.source } : {}),
      };
    }
    case uuid:
      return { type: 'string', format: 'uuid', pattern: UUID.source };
    case name:
      return { type: 'string', maxLength: 255, pattern: NAME.source };
    case time:
      // date-time (RFC 3339) requires the offset, as the data model does.
      return { type: 'string', format: 'date-time' };
    case number: {
      const opts = arg as { min?: number; max?: number; integer?: boolean; what?: string };
      return {
        type: opts.integer === true ? 'integer' : 'number',
        ...(opts.what !== undefined ? { description: opts.what } : {}),
        ...(opts.min !== undefined ? { minimum: opts.min } : {}),
        ...(opts.max !== undefined ? { maximum: opts.max } : {}),
      };
    }
    case boolean:
      return { type: 'boolean' };
    case oneOf:
      return { type: 'string', enum: arg };
    case arrayOf:
      return { type: 'array', items: jsonSchemaOf(arg) };
    case arrayOfNullable:
      return { type: 'array', items: { anyOf: [jsonSchemaOf(arg), { type: 'null' }] } };
    case mapOf:
      return {
        type: 'object',
        additionalProperties: jsonSchemaOf(arg),
        propertyNames: { minLength: 1, maxLength: 255 },
      };
    case object:
      return objectSchema(arg);
  }
  throw new Error(`jsonSchemaOf: a field type (${t.name}) not made by schema.ts's factories`);
}

/** JSON Schema of an object with a field table (nullable fields accept null; ext_ fields are allowed). */
export function objectSchema(spec: Fields, extra: Record<string, JsonSchema> = {}): JsonSchema {
  const properties: Record<string, JsonSchema> = { ...extra };
  const requiredKeys = Object.keys(extra);
  for (const [k, f] of Object.entries(spec)) {
    const s = jsonSchemaOf(f.type);
    properties[k] = f.nullable ? { anyOf: [s, { type: 'null' }] } : s;
    if (!f.optional) requiredKeys.push(k);
  }
  return { type: 'object', properties, required: requiredKeys, patternProperties: { '^ext_': {} } };
}
