/**
 * `ebadge provision PARTIES --out DIR [--apply]`: the broker's side of least privilege (src/provision) from a parties
 * file. Writes DIR/definitions.json (for `rabbitmqctl import_definitions`) and, per party, DIR/<name>/ with its
 * connection settings (hub.json or bus.json) and, for a password party, its password in broker.pw. With --apply it
 * also loads the definitions into the broker through rabbitmqctl and deletes the user guest.
 *
 * Secrets: a password is generated once (32 random bytes) and kept in DIR/<name>/broker.pw, so running provision
 * again (a party added) changes nobody's password; delete the file to change one. A `passwordFile` in the parties
 * file is used instead. Password files and definitions.json (password hashes) are written 0600 in 0700 folders,
 * and no password is ever printed or put on a command line. A settings file edited since a run wrote it (the
 * operator's devices and crypto added to it) is never overwritten: this run's goes beside it as <file>.new when it
 * differs; one still as written is replaced.
 */

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { readFileBounded } from '../core/read-bounded.js';
import {
  definitions,
  PASSWORD_FILE,
  type Plan,
  ProvisionError,
  parseParties,
  partySettings,
} from '../provision/index.js';
import {
  mosquittoAcl,
  mosquittoConf,
  mosquittoPasswords,
  mosquittoSettings,
  mosquittoUrl,
} from '../provision/mosquitto.js';
import { type MixedDefinitions, mqttDefinitions, mqttSettings } from '../provision/mqtt.js';
import { type Io, UsageError } from './common.js';

export const PROVISION_USAGE = `  provision PARTIES.json --out DIR [--apply [--rabbitmqctl PATH] [--node NODE]] [--mosquitto URL]
                               RabbitMQ definitions and each party's config and password (docs/provisioning.md);
                               --mosquitto: Mosquitto's ACL, password file and listener (ebadge.conf) instead,
                               configs for that broker`;

const OPTIONS = {
  out: { type: 'string' },
  apply: { type: 'boolean' },
  rabbitmqctl: { type: 'string' },
  node: { type: 'string' },
  mosquitto: { type: 'string' },
} as const;

export async function provision(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  const [file, ...rest] = positionals;
  if (file === undefined) throw new UsageError('the parties file is required: ebadge provision PARTIES.json --out DIR');
  if (rest.length > 0) throw new UsageError(`provision takes one parties file, found also "${rest[0] as string}"`);
  if (values.out === undefined) throw new UsageError('--out DIR is required (where the definitions and configs go)');
  if (values.apply !== true && (values.rabbitmqctl !== undefined || values.node !== undefined))
    throw new UsageError('--rabbitmqctl and --node go with --apply');

  const plan = parseParties(readJson(file), file);
  if (values.mosquitto !== undefined && values.apply === true)
    throw new UsageError('--apply loads RabbitMQ; with --mosquitto, give the broker the files this writes');
  const mosquitto = values.mosquitto === undefined ? undefined : mosquittoUrl(plan, values.mosquitto);
  // Made before anything is written: a name that cannot be a topic level is refused with nothing half done.
  const acl = mosquitto === undefined ? '' : mosquittoAcl(plan);
  const out = values.out;
  privateDir(out);
  const passwords = new Map<string, string>();
  const said: string[] = [];
  for (const p of plan.parties) {
    const dir = path.join(out, p.name);
    privateDir(dir);
    const pwFile = path.join(dir, PASSWORD_FILE);
    let how: string;
    if (p.auth === 'external') {
      // A password left from an earlier run would look usable, and the user has none any more.
      fs.rmSync(pwFile, { force: true });
      how = `EXTERNAL: put its client certificate (CN "${p.name}") and key beside it`;
    } else {
      let password: string;
      if (p.passwordFile !== undefined) {
        password = readPassword(path.resolve(path.dirname(file), p.passwordFile), p.name);
        how = `password from ${p.passwordFile}`;
      } else if (fs.existsSync(pwFile)) {
        password = readPassword(pwFile, p.name);
        how = `password kept in ${PASSWORD_FILE}`;
      } else {
        password = randomBytes(32).toString('base64url');
        how = `password generated into ${PASSWORD_FILE}`;
      }
      passwords.set(p.name, password);
      writeSecret(pwFile, `${password}\n`);
    }
    const s =
      mosquitto === undefined
        ? mqttSettings(plan, p, partySettings(plan, p))
        : mosquittoSettings(mosquitto, p, partySettings(plan, p));
    const kept = writeSettings(path.join(dir, s.file), `${JSON.stringify(s.config, null, 2)}\n`);
    said.push(`${path.join(dir, s.file)}: ${p.role} ${p.name}, ${p.peers.length} peer(s); ${how}${kept}`);
  }
  if (mosquitto !== undefined) {
    // Secrets too (password hashes): 0600 here; the operator copies them where the broker reads them.
    const dir = path.join(out, 'mosquitto');
    privateDir(dir);
    writeSecret(path.join(dir, 'acl'), acl);
    writeSecret(path.join(dir, 'passwords'), mosquittoPasswords(plan, passwords));
    // No secret in it: the listener, the files' paths and the settings, one file for the broker's config to include.
    fs.writeFileSync(path.join(dir, 'ebadge.conf'), mosquittoConf(plan, mosquitto, path.resolve(dir)), { mode: 0o644 });
    fs.chmodSync(path.join(dir, 'ebadge.conf'), 0o644);
    io.out(
      `${dir}: acl, passwords and ebadge.conf for the Mosquitto at ${mosquitto}; ebadge.conf is its listener ` +
        '(allow_anonymous false, password_file, acl_file, use_username_as_clientid true' +
        (mosquitto.startsWith('mqtts:')
          ? `, cafile, certfile, keyfile in ${dir}` +
            (plan.parties.some((p) => p.auth === 'external')
              ? ', require_certificate true, use_identity_as_username true'
              : '')
          : '') +
        "): put it in the broker's include_dir, with the paths changed if the broker reads copies of the files",
    );
    for (const line of said) io.out(line);
    return 0;
  }
  // Parties marked MQTT: their part rewritten for RabbitMQ's MQTT plugin (src/provision/mqtt.ts).
  const defs = mqttDefinitions(plan, definitions(plan, passwords));
  const defsFile = path.join(out, 'definitions.json');
  writeSecret(defsFile, `${JSON.stringify(defs, null, 2)}\n`);
  io.out(`${defsFile}: ${summary(plan, defs)}`);
  for (const line of said) io.out(line);
  if (values.apply !== true) {
    // On its standard input: the Debian wrapper runs rabbitmqctl as the rabbitmq user, who cannot read a 0600 file.
    io.out(
      `load it with: rabbitmqctl import_definitions --format json < ${defsFile} && rabbitmqctl delete_user guest ` +
        '(or run this again with --apply)',
    );
    return 0;
  }
  await apply(plan, defs, { ctl: values.rabbitmqctl ?? 'rabbitmqctl', node: values.node }, io);
  return 0;
}

function summary(plan: Plan, d: MixedDefinitions): string {
  return (
    `vhost "${plan.vhost}", ${plan.parties.length} party users, ${d.permissions.length} permissions, ` +
    `${d.topic_permissions.length} topic permissions, ${d.exchanges.length} exchanges, ${d.queues.length} queues, ` +
    `${d.bindings.length} bindings, delivery limit ${plan.deliveryLimit}; guest: no password, no tags`
  );
}

/**
 * Loads the definitions through rabbitmqctl, on its standard input (the Debian wrapper runs it as the rabbitmq user,
 * who could not read our 0600 file), waits until the broker has them (the import runs asynchronously), and deletes
 * guest, which an import can only disable.
 */
async function apply(plan: Plan, defs: MixedDefinitions, o: { ctl: string; node: string | undefined }, io: Io) {
  const ctl = (args: string[], input?: string): Promise<string> =>
    run(o.ctl, [...(o.node === undefined ? [] : ['-n', o.node]), '-q', ...args], input);
  await ctl(['import_definitions', '--format', 'json'], JSON.stringify(defs));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const listed = JSON.parse(await ctl(['list_permissions', '-p', plan.vhost, '--formatter', 'json'])) as {
      user: string;
    }[];
    const users = new Set(listed.map((p) => p.user));
    const missing = plan.parties.filter((p) => !users.has(p.name));
    if (missing.length === 0) break;
    if (Date.now() > deadline)
      throw new ProvisionError(
        'APPLY',
        `the broker has no permissions for ${missing[0]?.name} a minute after the import`,
      );
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const users = JSON.parse(await ctl(['list_users', '--formatter', 'json'])) as { user: string }[];
  if (users.some((u) => u.user === 'guest')) await ctl(['delete_user', 'guest']);
  io.out(`applied to the broker${o.node === undefined ? '' : ` ${o.node}`}: vhost "${plan.vhost}", guest deleted`);
}

function run(file: string, args: string[], input: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new ProvisionError('APPLY', `cannot run ${file}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(text);
      else {
        const why = `${Buffer.concat(err).toString('utf8')}${text}`.trim().split('\n').slice(-5).join(' / ');
        reject(new ProvisionError('APPLY', `${file} ${args.join(' ')}: exit ${code ?? signal}: ${why}`));
      }
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileBounded(file).toString('utf8');
  } catch (err) {
    throw new ProvisionError('PARTIES', `${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ProvisionError('PARTIES', `${file}: not valid JSON (${(err as Error).message})`);
  }
}

function readPassword(file: string, party: string): string {
  let text: string;
  try {
    text = readFileBounded(file).toString('utf8');
  } catch (err) {
    throw new ProvisionError(
      'PARTIES',
      `the password file of ${party}, ${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '' || /[\r\n]/.test(password))
    throw new ProvisionError('PARTIES', `the password file of ${party}, ${file}: expected one line, the password`);
  return password;
}

/**
 * A party's settings, unless the operator has edited the file since a run wrote it: the operator adds the devices
 * and crypto to it (docs/operations.md), so a run never overwrites an edited one, as a package manager treats an
 * edited config file. What this run would have written then goes beside it, `.new`, when it differs, and the line
 * printed says so. A file still as a run wrote it (its SHA-256 kept in `.<name>.sha256` beside it) is replaced.
 */
function writeSettings(file: string, text: string): string {
  const neu = `${file}.new`;
  const record = path.join(path.dirname(file), `.${path.basename(file)}.sha256`);
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');
  // Whole or not at all: a file cut short by a crash would be kept as it is by every later run. The record comes
  // after the file: a crash between them leaves the file taken for edited, never an edit taken for ours.
  const write = () => {
    fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
    fs.renameSync(`${file}.tmp`, file);
    fs.writeFileSync(`${record}.tmp`, `${sha(text)}\n`, { mode: 0o644 });
    fs.renameSync(`${record}.tmp`, record);
    fs.rmSync(neu, { force: true });
  };
  let old: string;
  try {
    old = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    write();
    return '';
  }
  if (old === text) {
    // Left from an earlier run whose differences the operator has merged (or undone) since: ours from now on.
    write();
    return '';
  }
  let ours = '';
  try {
    ours = fs.readFileSync(record, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (ours === sha(old)) {
    write();
    return `; ${path.basename(file)} updated: nobody had edited it since the last run`;
  }
  fs.writeFileSync(neu, text, { mode: 0o644 });
  return `; ${path.basename(file)} kept as it is: this run's, which differs, is in ${neu} to merge`;
}

/** A folder only we can enter, made if missing. */
function privateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** Written whole (a temp file renamed over it) and 0600 from the first byte. */
function writeSecret(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}
