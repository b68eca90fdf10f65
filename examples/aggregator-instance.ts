/**
 * docs/operations.md's example, "An aggregator as N instances": one instance of a party, on the bus.json and broker.pw
 * (or client certificate) `ebadge provision` wrote. `test/unit/operations-example.test.ts` keeps the doc's copy of the
 * code below identical to this file (with the package's import paths); test/integration/provision.test.ts runs it on
 * the generated configs of a TLS broker, with a password and with a client certificate.
 *
 *   EBADGE_INSTANCE=host-1 node .out/examples/aggregator-instance.js --config provisioned/vpp-acme/bus.json
 */
// operations.md example begins
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { amqpBus } from '../src/bus/index.js';

const file = parseArgs({ options: { config: { type: 'string' } } }).values.config ?? 'bus.json';
const cfg = JSON.parse(readFileSync(file, 'utf8')); // as `ebadge provision` wrote it: url, name, peers, inboxes, tls ...
const near = (name: string): Buffer => readFileSync(path.resolve(path.dirname(file), name)); // the config's neighbours
const instance = process.env['EBADGE_INSTANCE'] ?? 'solo'; // the unit sets it: %H-%i
const bus = amqpBus({
  name: cfg.name,
  peers: cfg.peers,
  url: cfg.url,
  inboxes: cfg.inboxes,
  declareExchanges: cfg.declareExchanges,
  connectOptions: {
    // amqps: the broker's CA from the parties file (without one, the system's), and an `external` party's certificate.
    ...(cfg.tls && {
      tls: {
        ...(cfg.tls.ca && { ca: near(cfg.tls.ca) }),
        ...(cfg.tls.cert && { cert: near(cfg.tls.cert), key: near(cfg.tls.key) }),
      },
    }),
    ...(cfg.external
      ? { mechanism: 'EXTERNAL' as const }
      : { username: cfg.name, password: near(cfg.passwordFile).toString().trim() }),
  },
  instance,
});
// Store it, keyed by its message id (see below); the handler's promise settles the message.
bus.onReport((report, ctx) => console.log(ctx.sender, ctx.delivery.messageId, report.from.toString()));
bus.transport.on('failed', (err) => console.error(`${cfg.name}/${instance}: ${err.message}`)); // a wrong CA, password ...
await bus.start();
console.error(`${cfg.name}/${instance} running`);
process.on('SIGTERM', () => void bus.close().then(() => process.exit(0)));
// operations.md example ends
