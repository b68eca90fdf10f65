/** Assertions shared by the codec tests: typed errors by class and `code` (never message text), exact deep equality. */
import * as assert from 'uvu/assert';
import type { AmqpError } from '../../src/amqp/errors.js';

type ErrorClass = abstract new (...args: never[]) => AmqpError;

/** Runs `fn`, which must throw an instance of `cls` (with `code` when given). Returns the error. */
export function throwsTyped<E extends AmqpError>(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => E,
  code?: string,
  what = '',
): E {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    if (!(err instanceof cls)) {
      const e = err as Error;
      assert.unreachable(
        `${what}: expected ${cls.name}${code === undefined ? '' : ` ${code}`}, got ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}`,
      );
    }
    if (code !== undefined) assert.is((err as E).code, code, `${what}: error code`);
    return err as E;
  }
  assert.unreachable(
    `${what}: expected ${cls.name}${code === undefined ? '' : ` ${code}`}, but it returned ${describeShort(result)}`,
  );
  throw new Error('unreachable');
}

/** Either `fn` returns, or it throws one of `classes`; anything else (RangeError, TypeError ...) fails. */
export function returnsOrThrows(
  fn: () => unknown,
  classes: readonly ErrorClass[],
  what: string,
): { ok: true; value: unknown } | { ok: false; error: AmqpError } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (classes.some((c) => err instanceof c)) return { ok: false, error: err as AmqpError };
    const e = err as Error;
    assert.unreachable(
      `${what}: escaped ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`,
    );
    throw err;
  }
}

function describeShort(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x))?.slice(0, 80) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Deep equality (uvu's dequal) plus what dequal glosses over: -0 versus 0, and a key's own-ness for `__proto__`. */
export function equalExact(actual: unknown, expected: unknown, what: string): void {
  assert.equal(actual, expected, what);
  const walk = (a: unknown, e: unknown, path: string): void => {
    if (typeof e === 'number') {
      if (!Object.is(a, e))
        assert.unreachable(`${what}${path}: ${String(a)} is not ${Object.is(e, -0) ? '-0' : String(e)}`);
      return;
    }
    if (e === null || typeof e !== 'object' || Buffer.isBuffer(e) || e instanceof Date) return;
    const ao = a as Record<string, unknown>;
    for (const k of Object.keys(e)) {
      if (!Object.hasOwn(ao, k)) assert.unreachable(`${what}${path}: missing own key ${JSON.stringify(k)}`);
      walk(ao[k], (e as Record<string, unknown>)[k], `${path}.${k}`);
    }
  };
  walk(actual, expected, '');
}
