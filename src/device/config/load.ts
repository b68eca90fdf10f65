/** Reading the configuration file: every failure, reading and JSON syntax included, becomes a ConfigError. */
import { JsonFileError, readJsonFile } from '../../store/json-file.js';
import { parseConfig } from './parse.js';
import { shown } from './reader.js';
import { ConfigError, type HubConfig } from './types.js';

/** Reads and checks a configuration file. Every failure, reading included, is a ConfigError. */
export function loadConfig(file: string): HubConfig {
  let value: unknown;
  try {
    value = readJsonFile(file);
  } catch (err) {
    if (!(err instanceof JsonFileError)) throw err;
    const fault = err.fault;
    switch (fault.code) {
      case 'UNREADABLE':
        throw new ConfigError(file, '$', 'a readable JSON file', `${unreadable(fault.errno)} (${fault.errno})`);
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
  return parseConfig(value, file);
}

function unreadable(errno: string): string {
  if (errno === 'ENOENT') return 'no file';
  if (errno === 'EISDIR') return 'a directory';
  if (errno === 'EACCES' || errno === 'EPERM') return 'a file the hub may not read';
  return 'a file that cannot be read';
}
