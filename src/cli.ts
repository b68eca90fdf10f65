/**
 * `ebadge`: the operator's command line (one bundled file, dist/ebadge.js). Key management, message validation,
 * and sending, requesting and listening on the bus as an entity. `--help` works everywhere.
 *
 * Exit codes: 0 done, 1 a failure (invalid files or messages, no reply, a refused connection), 2 a usage error.
 * Nothing secret is printed.
 */

import { AmqpError } from './amqp/index.js';
import { BusError } from './bus/index.js';
import { BUS_USAGE, listen, request, send } from './cli/bus.js';
import { type Io, UsageError } from './cli/common.js';
import { KEYS_USAGE, keygen, rotate, verify } from './cli/keys.js';
import { PROVISION_USAGE, provision } from './cli/provision.js';
import { fields, types } from './cli/schema.js';
import { validate } from './cli/validate.js';
import { readStreamBounded } from './core/read-bounded.js';
import { VERSION } from './core/version.js';
import { CryptoError } from './crypto/index.js';
import { ProvisionError } from './provision/index.js';

export type { Io } from './cli/common.js';

const USAGE = `usage: ebadge COMMAND ...
${BUS_USAGE}
  validate [FILE|-]            one JSON message per line: "ok TYPE" or "error CODE PATH: reason"
  types                        every message type with its fields ([optional])
  fields TYPE                  the fields of one type: value type, required or optional, null allowed, meaning
${KEYS_USAGE}
${PROVISION_USAGE}
  --version`;

const stdio: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
  stdin: () => readStreamBounded(process.stdin, 'standard input'),
};

export async function main(argv: string[], io: Io = stdio, signal?: AbortSignal): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (
      command === undefined ||
      command === '--help' ||
      command === 'help' ||
      rest.includes('--help') ||
      rest.includes('-h')
    ) {
      io.out(USAGE);
      return command === undefined ? 2 : 0;
    }
    if (command === '--version' || command === 'version') {
      io.out(`ebadge ${VERSION} (node ${process.version}, ${process.arch})`);
      return 0;
    }
    switch (command) {
      case 'types':
        return types(rest, io);
      case 'fields':
        return fields(rest, io);
      case 'send':
        return await send(rest, io);
      case 'request':
        return await request(rest, io);
      case 'listen':
        return await listen(rest, io, signal);
      case 'validate':
        return await validate(rest, io);
      case 'provision':
        return await provision(rest, io);
      case 'keygen':
        return await keygen(rest, io);
      case 'keyring':
        if (rest[0] === 'verify') return verify(rest.slice(1), io);
        if (rest[0] === 'rotate') return await rotate(rest.slice(1), io);
        break;
      default:
    }
    throw new UsageError(`unknown command "${[command, ...rest.slice(0, 1)].join(' ')}"`);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.err(`error: ${(err as Error).message}\n${(err as { hint?: string }).hint ?? USAGE}`);
      return 2;
    }
    if (
      err instanceof CryptoError ||
      err instanceof BusError ||
      err instanceof AmqpError ||
      err instanceof ProvisionError
    ) {
      io.err(`error: ${err.message} [${err.code}]`);
      return 1;
    }
    io.err(`error: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

/** Runs the command line of this process, with Ctrl-C ending a `listen` cleanly. */
export function run(): void {
  const abort = new AbortController();
  // `ebadge types | head`: the reader went away, which is no error of ours; stop quietly, as Unix tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    abort.abort();
    process.exit(0);
  });
  // Ends the process once what it printed is written: a socket still open (a broker that reads no more) must not
  // keep it alive, and output still going into a pipe must not be cut.
  const exit = (code: number): void => {
    const pending = [process.stdout, process.stderr].find((s) => s.writableLength > 0);
    if (pending !== undefined) pending.once('drain', () => exit(code));
    else process.exit(code);
  };
  // A signal stops the command (listen ends its loop); whatever it still waits for gets four seconds, more than the
  // three its goodbyes to the broker may take (cli/bus.ts, CLOSE_MS).
  const stop = (code: number): void => {
    abort.abort();
    setTimeout(() => exit(code), 4000).unref();
  };
  process.once('SIGINT', () => stop(130));
  process.once('SIGTERM', () => stop(143));
  main(process.argv.slice(2), stdio, abort.signal).then(
    (code) => {
      process.exitCode = code;
      setTimeout(() => exit(code), 500).unref();
    },
    (err: unknown) => {
      process.stderr.write(`fatal: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

// Run when executed directly (node .out/src/cli.js ...), not when imported by the tests or bundled.
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) run();
