/**
 * What src/bin/hub.ts loads after `--version`: the two names it calls, and nothing else. esbuild keeps every export
 * of a module that is imported dynamically (the namespace object escapes), with all they import; re-exported from
 * here, main.ts and cli/keys.ts are tree-shaken like any other module (their unused exports, such as the CLI's
 * `keys verify` and `keys rotate`, stay out of dist/hub.js: 2.7 KB).
 */

export { keygen } from '../cli/keys.js';
export { runHubProcess } from '../device/main.js';
