/**
 * The first version's example program (D3.2.1 §4.2), ported: a hub that answers every `get_load_report` with a
 * hard-coded `load_report`, over the first version's `<name>-up` / `<name>-down` queues.
 *
 *   npm run build:ts && node .out/examples/heh.js [amqp-url] [hub-name]     (then run examples/vpp.js)
 */
import { amqpBus } from '../src/bus/index.js';

const [url = process.env['EBADGE_URL'] ?? 'amqp://127.0.0.1:5672', name = 'heh-example'] = process.argv.slice(2);
// We log in as ourselves with EBADGE_PASSWORD, unless the URL names a user (amqp://guest@127.0.0.1 for a test broker).
const login = new URL(url).username === '' ? { username: name, password: process.env['EBADGE_PASSWORD'] ?? '' } : {};
console.error(`logging in as ${new URL(url).username || name}`); // stderr: stdout is the example's output

const bus = amqpBus({ name, peers: ['vpp-example'], url, connectOptions: login, topology: 'queues', role: 'hub' });

bus.onGetLoadReport(async (request, ctx) => {
  await ctx.reply({
    msg: 'load_report',
    from: request.from,
    to: request.to,
    resolution: request.resolution,
    device: request.device ?? null,
    values: [0.12, 0.17, 0.33, 0],
  });
});

await bus.start();
console.log(`${name}: answering get_load_report on ${name}-down`);
process.once('SIGINT', () => void bus.close());
process.once('SIGTERM', () => void bus.close());
