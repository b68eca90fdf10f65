/**
 * The 2016 reference VPP (eBADGE/message-bus test-vpp-async.py), ported: sends `get_report` to the hub every 5 s
 * and prints each `report`. `--count N` stops after N reports.
 *
 *   node .out/examples/vpp-2016.js [amqp-url] [hub-name] [vpp-name] [--count N]
 */
import { parseArgs } from 'node:util';
import { amqpBus } from '../src/bus/index.js';
import { EbTime } from '../src/codec/index.js';

const { values: flags, positionals } = parseArgs({
  options: { count: { type: 'string' }, every: { type: 'string' } },
  allowPositionals: true,
});
const [url = process.env['EBADGE_URL'] ?? 'amqp://127.0.0.1:5672', hub = 'heh-b827ebea02c1', name = 'vpp-xlab'] =
  positionals;
// We log in as ourselves with EBADGE_PASSWORD, unless the URL names a user (amqp://guest@127.0.0.1 for a test broker).
const login = new URL(url).username === '' ? { username: name, password: process.env['EBADGE_PASSWORD'] ?? '' } : {};
console.error(`logging in as ${new URL(url).username || name}`); // stderr: stdout is the example's output
const count = Number(flags.count ?? Infinity);
const everyMs = Number(flags.every ?? 5000);

const bus = amqpBus({ name, peers: [hub], url, connectOptions: login });
await bus.start();

let received = 0;
const ask = async (): Promise<void> => {
  const to = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000);
  try {
    const report = await bus.request(hub, {
      msg: 'get_report',
      from: to.plusSeconds(-3600),
      to,
      resolution: 900,
      signals: ['total.p', 'WaterHeater01.p'],
      heh_id: hub,
    });
    console.log(JSON.stringify(report));
    received++;
  } catch (err) {
    console.error(`no report: ${(err as Error).message}`);
  }
};
await ask();
const timer = setInterval(() => {
  if (received >= count) {
    clearInterval(timer);
    void bus.close();
    return;
  }
  void ask();
}, everyMs);
if (received >= count) {
  clearInterval(timer);
  await bus.close();
}
process.once('SIGINT', () => {
  clearInterval(timer);
  void bus.close();
});
