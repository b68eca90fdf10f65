/**
 * Reading the configuration file: every failure, reading and JSON syntax included, becomes a ConfigError. Then the
 * file's relative paths are made absolute against its own folder, and the files it names are checked the way the
 * run will use them (../../core/file-check.ts), the state directory too (writable, or creatable, by the hub's user),
 * so that `check-config` refuses what the run would refuse, with the same sentence, and a hub started by systemd
 * (whose working directory is /) finds `"passwordFile": "broker.pw"` next to its hub.json.
 */
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
