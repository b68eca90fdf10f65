/**
 * The README's example: an aggregator asks a hub for the last hour's report, then asks its boiler to shed 1.5 kW
 * for half an hour. `test/unit/readme.test.ts` keeps the README's copy of the code below identical to this file (with the package's import paths).
 *
 *   EBADGE_URL=amqp://guest@127.0.0.1:5672 node .out/examples/aggregator.js [hub] [vpp] [amqp-url]   (with `npm start`)
 */
// README example begins
import { randomUUID } from 'node:crypto';
import { amqpBus } from '../src/bus/index.js';
import { EbTime } from '../src/codec/index.js';

const [hub = 'heh-example', name = 'vpp-example', url = process.env['EBADGE_URL'] ?? 'amqp://127.0.0.1:5672'] =
  process.argv.slice(2);
// As ourselves with EBADGE_PASSWORD on a provisioned broker (it declared the exchanges), or as the URL's user (guest@).
const login = new URL(url).username === '' ? { username: name, password: process.env['EBADGE_PASSWORD'] ?? '' } : {};
console.error(`logging in as ${new URL(url).username || name}`); // stderr: stdout is the example's output
const vpp = amqpBus({ name, peers: [hub], url, connectOptions: login, declareExchanges: !('username' in login) });
vpp.onStatusReport((status, ctx) => console.log(ctx.sender, status)); // handlers first, then start()
await vpp.start();

const to = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000);
const report = await vpp.request(hub, {
  msg: 'get_report',
  from: to.plusSeconds(-3600),
  to,
  resolution: 900,
  signals: ['meter.p'],
});
const decision = await vpp.request(hub, {
  msg: 'activate',
  id: randomUUID(),
  modification_count: 0,
  device: 'boiler',
  from: to.plusSeconds(600),
  to: to.plusSeconds(2400),
  quantity: 1.5, // kW; + = less load or more generation
});
console.log(JSON.stringify(report), decision.msg); // accept_activation, reject_activation or modify_activation
await vpp.close();
// README example ends
