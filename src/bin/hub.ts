/**
 * The entry of dist/hub.js, the one file a hub integrator copies to the Pi. This is the composition layer: the hub
 * (src/device) does not reach into the operator's CLI, so `hub.js keygen` is the CLI's keygen, handed to the hub here
 * and run with the hub's exit codes.
 */
import { versionLine } from '../device/about.js';

// In the bundle, whatever is only imported dynamically is initialised on first use: `--version` (what scripts and
// package managers ask first) answers without the hub's top-level work (node:tls, node:crypto, tables, noble).
if (process.argv[2] === '--version' || process.argv[2] === '-v') {
  process.stdout.write(`${versionLine()}\n`);
} else {
  import('./hub-loaded.js').then(
    (m) => m.runHubProcess({ keygen: m.keygen }),
    (err: unknown) => {
      process.stderr.write(`fatal: ${String(err)}\n`);
      process.exitCode = 70;
    },
  );
}
