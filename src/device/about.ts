/**
 * What `hub.js --version` and `--help` print. Kept apart from the hub so that the bundle's entry answers them
 * without loading the rest (src/bin/hub.ts).
 */
import { VERSION } from '../core/version.js';

export const HUB_VERSION = VERSION;
export const DEFAULT_CONFIG = '/etc/ebadge/hub.json';

export const versionLine = (): string => `ebadge-hub ${HUB_VERSION} (node ${process.version}, ${process.arch})`;

/** A function, not a constant: the entry imports versionLine from here and must not carry this text as well. */
export const usage = (): string => `usage: hub.js [run] [--config FILE]     run the hub (default ${DEFAULT_CONFIG})
       hub.js check-config [--config FILE]
       hub.js keygen --id ID --out FILE [--public FILE] [--force]
       hub.js bench [--config FILE] [--seconds N]    codec, sealing and broker round trips on this device
       hub.js --version | --help
exit codes: 0 stopped, 64 usage, 78 configuration, 70 internal; bench only: 77 credentials refused, 69 broker unreachable
the hub reconnects to the broker by itself, with backoff; it never exits because of the broker`;
