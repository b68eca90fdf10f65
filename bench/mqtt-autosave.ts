/**
 * What Mosquitto's save settings cost (docs/RELIABILITY.md, "What a PUBACK promises on Mosquitto"): a bus sends
 * BENCH_AUTOSAVE_N (default 5,000) reports, each resolved on its PUBACK, to a party whose session is offline (so the
 * broker queues them all), on a throw-away Mosquitto (test/helpers/mosquitto.ts) per setting, in one run: no
 * persistence and the default autosave_interval (1800 s) as the baselines, autosave_on_changes with 100 and 1.
 * Prints sends a second per setting; one run each (the last setting takes about 40 s on this machine).
 *
 *   npx tsc -p tsconfig.json --outDir .out && node .out/bench/mqtt-autosave.js
 */
import { EbTime, type Message } from '../src/codec/index.js';
import { mqttBus } from '../src/mqtt/index.js';
import { Mosquitto, type MosquittoOptions } from '../test/helpers/mosquitto.js';

const N = Number(process.env['BENCH_AUTOSAVE_N'] ?? 5000);

const settings: [string, MosquittoOptions][] = [
  ['persistence false', {}],
  ['persistence true, autosave_interval 1800 (default)', { persistence: true }],
  [
    'autosave_on_changes true, autosave_interval 100',
    { persistence: true, autosaveOnChanges: true, autosaveIntervalS: 100 },
  ],
  [
    'autosave_on_changes true, autosave_interval 1',
    { persistence: true, autosaveOnChanges: true, autosaveIntervalS: 1 },
  ],
];

const report = (i: number): Message<'report'> =>
  ({
    msg: 'report',
    from: EbTime.fromEpochMs(0),
    to: EbTime.fromEpochMs(60_000),
    resolution: 60,
    values: { 'meter.p': [i] },
  }) as Message<'report'>;

console.log(`mqtt-autosave: ${N} sends to an offline session, each resolved on its PUBACK (Mosquitto, MQTT 5)`);
// The first round warms the process up (JIT, MQTT.js) and is not printed.
for (const [i, [label, options]] of [settings[0] as [string, MosquittoOptions], ...settings].entries()) {
  const m = await Mosquitto.start({ ...options, config: () => ['max_queued_messages 0'] });
  try {
    const rx = mqttBus({ name: 'rx-autosave', peers: ['tx-autosave'], url: m.url });
    rx.onReport(() => undefined);
    await rx.start(); // the session and its subscription, then away
    await rx.close();
    const tx = mqttBus({ name: 'tx-autosave', peers: ['rx-autosave'], url: m.url });
    await tx.start();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: N }, (_, i) => tx.publish('rx-autosave', report(i), { messageId: `a-${i}` })),
    );
    const ms = performance.now() - t0;
    await tx.close();
    if (i > 0) console.log(`  ${label}: ${ms.toFixed(0)} ms, ${Math.round(N / (ms / 1000))} sends/s`);
  } finally {
    await m.close();
  }
}
