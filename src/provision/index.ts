/**
 * Least privilege on the broker, from one file: the parties of the bus in, RabbitMQ definitions and each party's
 * connection settings out (`ebadge provision`, docs/provisioning.md).
 */
export {
  DEAD_LETTER_MAX,
  type Definitions,
  definitions,
  INBOX_TTL_MS,
  literal,
  passwordHash,
  privateNames,
  routingKeys,
} from './definitions.js';
export { ProvisionError } from './errors.js';
export { type Auth, PARTIES_FORMAT, type Party, type Plan, parseParties } from './parties.js';
export { ALWAYS, ROLES, type Role, SENDS } from './roles.js';
export { CERT_FILE, KEY_FILE, PASSWORD_FILE, type PartySettings, partySettings, partyUrl } from './settings.js';
