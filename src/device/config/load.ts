/**
 * Reading the configuration file: every failure, reading and JSON syntax included, becomes a ConfigError. Then the
 * file's relative paths are made absolute against its own folder, and the files it names are checked the way the
 * run will use them (../../core/file-check.ts), the state directory too (writable, or creatable, by the hub's user),
 * so that `check-config` refuses what the run would refuse, with the same sentence, and a hub started by systemd
 * (whose working directory is /) finds `"passwordFile": "broker.pw"` next to its hub.json.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import * as path from 'node:path';
import { currentReader, directoryProblem, type FileReader, type FileRole, fileProblem } from '../../core/file-check.js';
import { readFileBounded } from '../../core/read-bounded.js';
import { JsonFileError, readJsonFile } from '../../store/json-file.js';
import { parseConfig } from './parse.js';
import { shown } from './reader.js';
import { ConfigError, type DeviceConfig, type HubConfig } from './types.js';

/**
 * Reads and checks a configuration file and the files it names. Every failure, reading included, is a ConfigError.
 * `reader` is who will read those files (the running process; tests give another).
 */
export function loadConfig(file: string, reader: FileReader | undefined = currentReader()): HubConfig {
  let value: unknown;
  try {
    value = readJsonFile(file);
  } catch (err) {
    if (!(err instanceof JsonFileError)) throw err;
    const fault = err.fault;
    switch (fault.code) {
      case 'UNREADABLE':
        throw new ConfigError(file, '$', 'a readable JSON file', `${unreadable(fault.errno)} (${fault.errno})`);
      case 'TOO_LARGE':
        throw new ConfigError(file, '$', `a JSON file of at most ${fault.limit >> 20} MiB`, 'a larger one (not read)');
      case 'SYNTAX':
        throw new ConfigError(file, '$', 'valid JSON', err.detail);
      case 'DUPLICATE_KEY':
        throw new ConfigError(
          file,
          fault.path,
          'each key once in an object',
          `the key ${shown(fault.key)} a second time`,
        );
    }
  }
  const config = resolvePaths(parseConfig(value, file), path.dirname(path.resolve(file)));
  for (const [at, named, role] of namedFiles(config, file)) {
    const problem = fileProblem(named, role, reader);
    if (problem !== undefined) throw new ConfigError(file, at, problem.expected, problem.found);
  }
  if (config.broker.passwordFile !== undefined) readPasswordFile(config.broker.passwordFile, file);
  if (config.broker.tls !== undefined) checkTlsFiles(config.broker.tls, file);
  // The run creates the state directory if it is missing (0700): it must be able to, or to write in it.
  const state = directoryProblem(config.stateDir, reader);
  if (state !== undefined) throw new ConfigError(file, '$.stateDir', state.expected, state.found);
  return config;
}

/**
 * The broker password in `passwordFile`: its one line, without the spaces and line end around it. An empty file (what
 * `read -rsp` leaves when Enter is pressed) or several lines (another file named by mistake, sent whole to the broker
 * as the password) is a ConfigError of `config`, never read past 4 KiB.
 */
export function readPasswordFile(passwordFile: string, config: string): string {
  const at = '$.broker.passwordFile';
  let text: string;
  try {
    text = readFileBounded(passwordFile, 4096).toString('utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(config, at, 'a password file of at most 4 KiB', code === 'EFBIG' ? 'a larger one' : code);
  }
  if (text === '') throw new ConfigError(config, at, 'a password on one line', 'an empty file');
  if (/[\r\n]/.test(text))
    throw new ConfigError(config, at, 'a password on one line', `${text.split(/\r?\n/).length} lines`);
  return text;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * The TLS files parsed as the run's TLS socket will take them. Node ignores a `ca` that holds no PEM certificate (DER,
 * an empty file, a key) and then trusts nothing, and fails every connection on a bad `cert` or `key` with OpenSSL's
 * text: the hub retried for ever, telling to set broker.tls.ca (it was set) or nothing at all, where the mistake is
 * in a file of its own configuration (78).
 */
function checkTlsFiles(tls: { ca?: string; cert?: string; key?: string }, config: string): void {
  const certs = (at: string, file: string, what: string): X509Certificate[] => {
    const data = readFileBounded(file);
    const blocks = data.toString('latin1').match(PEM_CERT) ?? [];
    const parsed = blocks.map((b) => {
      try {
        return new X509Certificate(b);
      } catch (err) {
        throw new ConfigError(
          config,
          at,
          what,
          `${file}, whose PEM certificate does not parse (${(err as Error).message})`,
        );
      }
    });
    if (parsed.length === 0) throw new ConfigError(config, at, what, `${file}, ${notPem(data, 'certificate')}`);
    return parsed;
  };
  if (tls.ca !== undefined)
    certs('$.broker.tls.ca', tls.ca, "a PEM file of the CA certificate(s) that signed the broker's");
  const cert =
    tls.cert === undefined
      ? undefined
      : certs('$.broker.tls.cert', tls.cert, 'a PEM file of our client certificate')[0];
  if (tls.key === undefined) return;
  const keyAt = '$.broker.tls.key';
  const data = readFileBounded(tls.key);
  let key: KeyObject;
  try {
    key = createPrivateKey(data);
  } catch {
    // Never quote the key's text, nor OpenSSL's message about it.
    const encrypted = data.includes('ENCRYPTED');
    throw new ConfigError(
      config,
      keyAt,
      'the PEM private key of broker.tls.cert, not encrypted',
      `${tls.key}, ${encrypted ? 'an encrypted key: decrypt it (openssl pkey)' : notPem(data, 'key')}`,
    );
  }
  if (cert !== undefined && !cert.checkPrivateKey(key))
    throw new ConfigError(
      config,
      keyAt,
      `the private key of broker.tls.cert (${tls.cert})`,
      `${tls.key}, the key of another certificate`,
    );
}

/** What a file that holds no PEM block is, as far as can be told without quoting it, and how to convert DER. */
function notPem(data: Buffer, want: 'certificate' | 'key'): string {
  if (data.length === 0) return 'an empty file';
  if (data[0] === 0x30)
    return `DER (binary) rather than PEM: convert it (openssl ${want === 'key' ? 'pkey' : 'x509'} -inform der -in FILE -out FILE.pem)`;
  if (want === 'certificate' && data.includes('PRIVATE KEY-----')) return 'a private key, not a certificate';
  if (want === 'key' && data.includes('CERTIFICATE-----')) return 'a certificate, not a private key';
  return 'no PEM block in it';
}

/** The files the run reads, with the JSON path that names each and what it must be; `$` is the config itself. */
function namedFiles(c: HubConfig, file: string): [string, string, FileRole][] {
  const out: [string, string, FileRole][] = [['$', file, 'trusted']];
  const b = c.broker;
  if (b.passwordFile !== undefined) out.push(['$.broker.passwordFile', b.passwordFile, 'secret']);
  if (b.tls?.ca !== undefined) out.push(['$.broker.tls.ca', b.tls.ca, 'trusted']);
  if (b.tls?.cert !== undefined) out.push(['$.broker.tls.cert', b.tls.cert, 'trusted']);
  if (b.tls?.key !== undefined) out.push(['$.broker.tls.key', b.tls.key, 'secret']);
  if (c.crypto !== undefined) {
    out.push(['$.crypto.keyring', c.crypto.keyring, 'trusted']);
    out.push(['$.crypto.privateKey', c.crypto.privateKey, 'secret']);
  }
  // A file meter or relay (sysfs, GPIO) may only appear once its driver is up: the device adapter reports it.
  c.devices.forEach((d, i) => {
    if (d.meter?.kind === 'csv') out.push([`$.devices[${i}].meter.path`, d.meter.path, 'data']);
  });
  return out;
}

/** Every file path of the config, made absolute against `dir` (the config's folder). A command's argv is left as is. */
function resolvePaths(c: HubConfig, dir: string): HubConfig {
  const at = (p: string): string => (path.isAbsolute(p) ? p : path.join(dir, p));
  const b = c.broker;
  const tls = b.tls;
  return {
    ...c,
    stateDir: at(c.stateDir),
    broker: {
      ...b,
      ...(b.passwordFile === undefined ? {} : { passwordFile: at(b.passwordFile) }),
      ...(tls === undefined
        ? {}
        : {
            tls: {
              ...tls,
              ...(tls.ca === undefined ? {} : { ca: at(tls.ca) }),
              ...(tls.cert === undefined ? {} : { cert: at(tls.cert) }),
              ...(tls.key === undefined ? {} : { key: at(tls.key) }),
            },
          }),
    },
    ...(c.crypto === undefined
      ? {}
      : { crypto: { ...c.crypto, keyring: at(c.crypto.keyring), privateKey: at(c.crypto.privateKey) } }),
    devices: c.devices.map((d): DeviceConfig => {
      const { meter, actuator } = d;
      return {
        ...d,
        ...(meter === undefined || meter.kind === 'simulated' || meter.kind === 'command'
          ? {}
          : { meter: { ...meter, path: at(meter.path) } }),
        ...(actuator?.kind === 'file' ? { actuator: { ...actuator, path: at(actuator.path) } } : {}),
      };
    }),
  };
}

function unreadable(errno: string): string {
  if (errno === 'ENOENT') return 'no file';
  if (errno === 'EISDIR') return 'a directory';
  if (errno === 'EFTYPE') return 'a FIFO or a socket, not a file';
  if (errno === 'EACCES' || errno === 'EPERM') return 'a file the hub may not read';
  return 'a file that cannot be read';
}
