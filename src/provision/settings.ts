/**
 * Each party's connection settings, next to its secret: a hub gets a `hub.json` skeleton (src/device/config: its
 * broker, user, peers with their roles, the exchanges only checked since provisioning declared them, and one
 * simulated meter to replace with its devices), every other party a config for `ebadge --config` and for its own
 * program (src/cli/bus.ts). File names are relative to the config's folder, where provisioning writes the password
 * file; a certificate and its key are the operator's to put there. No secret is ever in a config.
 */
import type { Party, Plan } from './parties.js';
import type { Role } from './roles.js';

/** The password file beside each config (the name docs/operations.md uses on a hub). */
export const PASSWORD_FILE = 'broker.pw';
/** The client certificate and key an `external` party's config names, beside it. */
export const CERT_FILE = 'client.pem';
export const KEY_FILE = 'client.key';

export interface PartySettings {
  /** `hub.json` for a hub, `bus.json` for the others. */
  readonly file: string;
  readonly config: Record<string, unknown>;
}

/** The URL a party connects to: the broker's, with the vhost as its path. */
export function partyUrl(plan: Plan): string {
  return `${plan.url}/${encodeURIComponent(plan.vhost)}`;
}

export function partySettings(plan: Plan, party: Party): PartySettings {
  const url = partyUrl(plan);
  const ca = plan.ca === undefined ? {} : { ca: plan.ca };
  const secure = url.startsWith('amqps:');
  const login =
    party.auth === 'external'
      ? { external: true, tls: { ...ca, cert: CERT_FILE, key: KEY_FILE } }
      : { passwordFile: PASSWORD_FILE, ...(secure && plan.ca !== undefined ? { tls: ca } : {}) };
  const role = new Map(plan.parties.map((p) => [p.name, p.role]));
  if (party.role === 'hub') {
    return {
      file: 'hub.json',
      config: {
        name: party.name,
        broker: { url, ...(party.auth === 'password' ? { username: party.name } : {}), ...login },
        // parties.ts refuses a hub peer whose role the hub's configuration does not know.
        peers: party.peers.map((q) => ({ name: q, role: role.get(q) as Role })),
        declareExchanges: false,
        devices: [{ name: 'meter', meter: { kind: 'simulated' } }],
      },
    };
  }
  return {
    file: 'bus.json',
    config: {
      url,
      name: party.name,
      peers: [...party.peers],
      declareExchanges: false,
      ...(party.shards === undefined ? {} : { inboxes: { shards: party.shards } }),
      ...login,
    },
  };
}
