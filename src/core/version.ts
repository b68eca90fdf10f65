/** The release, printed by `ebadge --version` and `hub.js --version`; test/unit/repository.test.ts keeps it equal to package.json's. */
export const VERSION = '0.2.0';
