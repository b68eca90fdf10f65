/** The hub's JSON log lines: reserved keys kept, secrets redacted, errors summarised, and never a throw. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger, type Level } from '../../../src/device/log.js';

function capture(level: Level = 'info'): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger(level, (l) => lines.push(JSON.parse(l) as Record<string, unknown>)) };
}

const test = suite('log');

test('a field named msg, level or time cannot overwrite the line’s own (it is kept as field.<name>)', () => {
  const { lines, log } = capture();
  log.warn('send failed', { msg: 'report', level: 'x', time: 1, peer: 'vpp' });
  assert.is(lines[0]?.['msg'], 'send failed');
  assert.is(lines[0]?.['level'], 'warn');
  assert.type(lines[0]?.['time'], 'string');
  assert.equal([lines[0]?.['field.msg'], lines[0]?.['field.level'], lines[0]?.['field.time']], ['report', 'x', 1]);
  assert.is(lines[0]?.['peer'], 'vpp');
});

test('secrets are redacted by field name; errors are written as name, message and code', () => {
  const { lines, log } = capture();
  const err = Object.assign(new Error('refused'), { code: 'ACCESS_REFUSED' });
  log.error('login', { password: 'hunter2', privateKey: 'k', err });
  assert.is(lines[0]?.['password'], '[redacted]');
  assert.is(lines[0]?.['privateKey'], '[redacted]');
  assert.equal(lines[0]?.['err'], { name: 'Error', message: 'refused', code: 'ACCESS_REFUSED' });
});

test('levels below the configured one are not written', () => {
  const { lines, log } = capture('warn');
  log.debug('a');
  log.info('b');
  log.warn('c');
  assert.equal(
    lines.map((l) => l['msg']),
    ['c'],
  );
});

test('a bigint or a cycle in a field is written as text: logging never throws', () => {
  const { lines, log } = capture();
  const cycle: Record<string, unknown> = { a: 1 };
  cycle['self'] = cycle;
  log.info('odd values', { seq: 2n ** 70n, cycle, ok: true });
  assert.is(lines[0]?.['seq'], (2n ** 70n).toString());
  assert.is(lines[0]?.['cycle'], '[object Object]');
  assert.is(lines[0]?.['ok'], true);
});

test.run();
