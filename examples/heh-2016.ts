/**
 * The 2016 reference pair (eBADGE/message-bus test-heh-async.py), ported: a hub that answers each `get_report`
 * with a `report`, on the D3.2.3 exchanges (`<vpp>-to-<hub>`, `<hub>-to-<vpp>`).
 *
 *   node .out/examples/heh-2016.js [amqp-url] [hub-name] [vpp-name]
 */
import { amqpBus } from '../src/bus/index.js';

const [url = process.env['EBADGE_URL'] ?? 'amqp://127.0.0.1:5672', name = 'heh-b827ebea02c1', vpp = 'vpp-xlab'] =
  process.argv.slice(2);
// We log in as ourselves with EBADGE_PASSWORD, unless the URL names a user (amqp://guest@127.0.0.1 for a test broker).
const login = new URL(url).username === '' ? { username: name, password: process.env['EBADGE_PASSWORD'] ?? '' } : {};
console.error(`logging in as ${new URL(url).username || name}`); // stderr: stdout is the example's output

const bus = amqpBus({ name, peers: [vpp], url, connectOptions: login, prefetch: 10 });

bus.onGetReport(async (request, ctx) => {
  const steps = Math.ceil(request.from.secondsUntil(request.to) / request.resolution);
  const values: Record<string, (number | null)[]> = {};
  for (const signal of request.signals)
    values[signal] = Array.from({ length: steps }, (_, i) => Math.round(1000 * (1 + Math.sin(i))) / 1000);
  await ctx.reply({
    msg: 'report',
    from: request.from,
    to: request.from.plusSeconds(steps * request.resolution),
    resolution: request.resolution,
    values,
  });
});

await bus.start();
console.log(`${name}: answering get_report from ${vpp}`);
process.once('SIGINT', () => void bus.close());
process.once('SIGTERM', () => void bus.close());
