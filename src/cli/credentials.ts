/**
 * Whom the CLI logs in as, and with what. On a provisioned broker (ebadge provision, D3.2.3) every entity is a user
 * of its own name with its own password or certificate, and there is no guest; so:
 *
 *  - the user is the entity (`--as`, or `name` in --config). A URL that names another user is refused, except
 *    `guest`: the local test broker's account, used only when the URL says so, with a warning;
 *  - the password comes from a file or the environment, in this order: --password-file, the config's passwordFile,
 *    EBADGE_PASSWORD_FILE, EBADGE_PASSWORD. A password in the URL is refused (a command line is readable by every
 *    local user) unless it is guest's, which is no secret. No password and no certificate: refused, never guest;
 *  - --external logs in with the TLS client certificate, as its CN, which must be the entity's name.
 * The line that says whom we connect as goes to stderr, without the password.
 */

import { X509Certificate } from 'node:crypto';
import type { ConnectOptions } from '../amqp/index.js';
import { readFileBounded } from '../core/read-bounded.js';
import { UsageError } from './common.js';

export const GUEST = 'guest';

export interface LoginSources {
  /** The entity we act as. */
  readonly name: string;
  /** The URL, parsed (src/amqp parseUrl), and where it came from (`--url`, `--config FILE`, `the default`). */
  readonly url: ConnectOptions;
  readonly urlFrom: string;
  /** A password file and what named it (`--password-file`, `the passwordFile of FILE`). */
  readonly passwordFile?: { readonly file: string; readonly from: string };
  readonly external: boolean;
  /** The client certificate file, for EXTERNAL. */
  readonly certFile?: string;
  readonly env: NodeJS.ProcessEnv;
}

/** Fills in the URL's user, password and mechanism; returns the sentence saying whom we log in as. */
export function login(s: LoginSources): string {
  const url = s.url as { username?: string; password?: string; mechanism?: string };
  const where = `${s.url.hostname ?? '127.0.0.1'}:${s.url.port}${s.url.vhost === undefined ? '' : ` (vhost ${s.url.vhost})`}`;
  if (url.password !== undefined && url.username !== GUEST)
    throw new UsageError(
      `${s.urlFrom}: the URL holds a password, which every local user can read on a command line: use ` +
        '--password-file FILE, passwordFile in --config, EBADGE_PASSWORD_FILE or EBADGE_PASSWORD',
    );
  if (s.external) {
    if (s.certFile === undefined)
      throw new UsageError('--external needs the client certificate: --cert FILE --key FILE');
    const cn = commonName(s.certFile);
    if (cn !== s.name)
      throw new UsageError(
        `--external: the certificate ${s.certFile} is for "${cn ?? '(no CN)'}", so the broker would log us in as that ` +
          `user, not as ${s.name}`,
      );
    url.mechanism = 'EXTERNAL';
    url.username = s.name;
    return `connecting to ${where} as ${s.name} (EXTERNAL: the CN of ${s.certFile})`;
  }
  if (url.username === GUEST) {
    url.password = passwordWithSource(s)?.password ?? url.password ?? GUEST;
    return (
      `warning: connecting to ${where} as guest, because ${s.urlFrom} names it: RabbitMQ's default account, for a ` +
      'local test broker only (a provisioned broker has none)'
    );
  }
  if (url.username !== undefined && url.username !== s.name)
    throw new UsageError(
      `${s.urlFrom} logs in as "${url.username}", but the entity is ${s.name}: each entity is the broker user of its ` +
        'own name; leave the user out of the URL',
    );
  const found = passwordWithSource(s);
  if (found === undefined)
    throw new UsageError(
      `no password for the user ${s.name}: give --password-file FILE (or passwordFile in --config), set ` +
        'EBADGE_PASSWORD_FILE or EBADGE_PASSWORD, or log in with a client certificate (--external --cert --key); ' +
        'the CLI never falls back to guest',
    );
  url.username = s.name;
  url.password = found.password;
  return `connecting to ${where} as ${s.name} (password from ${found.from})`;
}

function passwordWithSource(s: LoginSources): { password: string; from: string } | undefined {
  if (s.passwordFile !== undefined)
    return {
      password: readSecret(s.passwordFile.file, s.passwordFile.from),
      from: `${s.passwordFile.file} (${s.passwordFile.from})`,
    };
  const file = s.env['EBADGE_PASSWORD_FILE'];
  if (file !== undefined && file !== '')
    return { password: readSecret(file, 'EBADGE_PASSWORD_FILE'), from: `${file} (EBADGE_PASSWORD_FILE)` };
  const pw = s.env['EBADGE_PASSWORD'];
  if (pw !== undefined && pw !== '') return { password: pw, from: 'EBADGE_PASSWORD' };
  return undefined;
}

function readSecret(file: string, from: string): string {
  let text: string;
  try {
    text = readFileBounded(file).toString('utf8');
  } catch (err) {
    throw new UsageError(`${from} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const pw = text.trim();
  if (pw === '') throw new UsageError(`${from} ${file}: the file is empty`);
  return pw;
}

/** The CN of a PEM certificate, as RabbitMQ takes the user from it (ssl_cert_login_from = common_name). */
function commonName(file: string): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileBounded(file));
  } catch (err) {
    throw new UsageError(`--cert ${file}: not a readable PEM certificate (${(err as Error).message})`);
  }
  return /^CN=(.*)$/m.exec(cert.subject)?.[1];
}
