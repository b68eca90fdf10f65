/** `hub.js bench` on the device: every figure is printed, with a progress line per step on stderr. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bench } from '../../../src/device/bench.js';
import { hubMain } from '../../../src/device/main.js';

const s = suite('hub bench');

s('codec and both crypto backends, a progress line per step, no broker without a config', async () => {
  const out: string[] = [];
  const err: string[] = [];
  assert.is(await bench({ out: (l) => out.push(l), err: (l) => err.push(l) }, { seconds: 0.05 }), 0);
  assert.match(out[0] as string, /^ebadge hub bench: node v/);
  for (const what of ['codec: encode', 'codec: decode', 'seal a report, PAIR (node)', 'open it (noble)']) {
    const line = out.find((l) => l.includes(what));
    assert.ok(line !== undefined && /[\d,]+ \/s$/.test(line), `${what}: ${String(line)}`);
  }
  assert.not.ok(out.some((l) => l.startsWith('broker')));
  assert.equal(
    err.map((l) => /^bench: (\d+)\/8 /.exec(l)?.[1]),
    ['1', '2', '3', '4', '5', '6', '7', '8'],
  );
});

s('hub.js bench refuses a bad --seconds with the usage exit code', async () => {
  const err: string[] = [];
  const code = await hubMain(['bench', '--seconds', 'soon'], {
    io: { out: () => undefined, err: (l) => err.push(l) },
    stop: new Promise(() => undefined),
  });
  assert.is(code, 64);
  assert.match(err.join('\n'), /--seconds/);
});

s.run();
