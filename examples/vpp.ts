/**
 * The other side of examples/heh.ts: a VPP that asks the hub for its load report and prints it.
 *
 *   node .out/examples/vpp.js [amqp-url] [hub-name]
 */
import { amqpBus } from '../src/bus/index.js';
import { EbTime } from '../src/codec/index.js';

const [url = process.env['EBADGE_URL'] ?? 'amqp://127.0.0.1:5672', hub = 'heh-example'] = process.argv.slice(2);
// We log in as ourselves with EBADGE_PASSWORD, unless the URL names a user (amqp://guest@127.0.0.1 for a test broker).
const login =
  new URL(url).username === '' ? { username: 'vpp-example', password: process.env['EBADGE_PASSWORD'] ?? '' } : {};
console.error(`logging in as ${new URL(url).username || 'vpp-example'}`); // stderr: stdout is the example's output

const bus = amqpBus({
  name: 'vpp-example',
  peers: [hub],
  url,
  connectOptions: login,
  topology: 'queues',
  role: 'controller',
});
await bus.start();

const to = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000);
const report = await bus.request(hub, {
  msg: 'get_load_report',
  from: to.plusSeconds(-240),
  to,
  resolution: 60,
  device: 'WaterHeater01',
});
console.log(JSON.stringify(report));
await bus.close();
