/**
 * The hub's configuration file: the example parses and gets its defaults, and every kind of mistake is refused
 * with the JSON path of the value, what was expected and what was found, without ever quoting a password.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, exampleConfig, loadConfig, parseConfig } from '../../../src/device/config/index.js';

const STATE = '/tmp/ebadge-test-state';

/** The example with edits applied: `['devices.1.meter.kind', 'modbus']`; undefined deletes the key. */
function patched(...edits: [string, unknown][]): unknown {
  const c = JSON.parse(JSON.stringify(exampleConfig(STATE))) as Record<string, unknown>;
  for (const [where, value] of edits) {
    const keys = where.split('.');
    const last = keys.pop();
    if (last === undefined) throw new Error('empty edit path');
    let o = c;
    for (const k of keys) {
      o[k] ??= {};
      o = o[k] as Record<string, unknown>;
    }
    if (value === undefined) delete o[last];
    else o[last] = value;
  }
  return c;
}

function refusal(fn: () => unknown, what: string): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw new Error(`${what}: expected a ConfigError, got ${String(err)}`);
  }
  assert.unreachable(`${what}: expected a ConfigError, but the configuration was accepted`);
  throw new Error('unreachable');
}

/** Checks the path exactly, and that expected and found say what they should (substrings, or exactly for found). */
function refused(value: unknown, where: string, expected: string, found: string | RegExp): ConfigError {
  const err = refusal(() => parseConfig(value), where);
  assert.is(err.path, where, err.message);
  assert.ok(err.expected.includes(expected), `expected "${err.expected}" to mention "${expected}"`);
  if (typeof found === 'string') assert.is(err.found, found, err.message);
  else assert.match(err.found, found, err.message);
  assert.is(err.message, `hub.json: ${err.path}: expected ${err.expected}, found ${err.found}`);
  return err;
}

async function inTempDir(fn: (dir: string) => void): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-config-'));
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const valid = suite('config: valid');

valid('the example parses and gets every default', () => {
  const c = parseConfig(exampleConfig(STATE));
  assert.is(c.name, 'heh-example');
  assert.equal(c.broker, {
    url: 'amqp://127.0.0.1:5672',
    username: 'guest',
    external: false,
    heartbeatS: 20,
    prefetch: 10,
    endpoints: [],
    reconnectDelayS: 5,
    maxReconnectDelayS: 60,
    inboxes: 'per-peer',
  });
  assert.equal(c.peers, [{ name: 'vpp-example', role: 'aggregator' }]);
  assert.is(c.topology, 'exchanges');
  assert.is(c.declareExchanges, true);
  assert.is(c.stateDir, STATE);
  assert.is(c.resolutionS, 60);
  assert.is(c.historyHours, 24);
  assert.is(c.fsyncIntervalS, 60);
  assert.is(c.allowClockChange, false);
  assert.equal(c.log, { level: 'info' });
  assert.is(c.crypto, undefined);
  assert.is('crypto' in c, false, 'an absent optional section is absent, not undefined');
  assert.equal(c.devices[0], {
    name: 'meter',
    classes: ['consumer'],
    type: 'meter',
    version: '1.0',
    signals: [{ name: 'p', unit: 'kW', desc: 'active power' }],
    meter: { kind: 'simulated', seed: 1, profile: 'household', peakKw: 3 },
  });
  assert.equal(c.devices[1], {
    name: 'boiler',
    classes: ['consumer'],
    type: 'boiler',
    version: '1.0',
    signals: [{ name: 'p', unit: 'kW', desc: 'active power' }],
    meter: { kind: 'simulated', seed: 2, profile: 'boiler', peakKw: 2 },
    actuator: { kind: 'simulated' },
    maxPowerKw: 2,
  });
});

valid('the stateDir given to exampleConfig is the one used', () => {
  assert.is(parseConfig(exampleConfig('/srv/hub')).stateDir, '/srv/hub');
});

valid('every section and kind, written out, is kept as written', () => {
  const c = parseConfig({
    name: 'heh-b827ebea02c1',
    broker: {
      url: 'amqps://broker.example:5671/ebadge',
      tls: { ca: '/etc/ca.pem', cert: '/etc/me.pem', key: '/etc/me.key', servername: 'broker' },
      external: true,
      heartbeatS: 0,
      prefetch: 1000,
      endpoints: ['broker-2.example:5671', '[::1]:5671'],
      reconnectDelayS: 2,
      maxReconnectDelayS: 30,
      inboxes: 'shared',
    },
    peers: [{ name: 'vpp-acme' }, { name: 'dso.local', role: 'dso' }],
    topology: 'queues',
    declareExchanges: false,
    resolutionS: 900,
    historyHours: 744,
    fsyncIntervalS: 3600,
    devices: [
      {
        name: 'pv',
        classes: ['generator'],
        meter: { kind: 'csv', path: 'pv.csv' },
        signals: [
          { name: 'p', range: [-5, 0] },
          { name: 'q', unit: 'kvar', desc: '' },
        ],
      },
      {
        name: 'heat_pump',
        meter: { kind: 'command', command: ['/usr/bin/hp', '--json'], intervalS: 30 },
        actuator: { kind: 'command', command: ['/usr/bin/hp-switch'], timeoutMs: 200 },
      },
      {
        name: 'ev',
        classes: ['consumer', 'storage'],
        meter: { kind: 'file', path: '/run/ev', scale: 0.001, signal: 'p' },
        actuator: { kind: 'file', path: '/run/ev-relay', on: 'ON', off: 'OFF' },
      },
    ],
    crypto: { keyring: '/etc/ebadge/keyring.json', privateKey: '/etc/ebadge/hub.key' },
    allowClockChange: true,
    log: { level: 'debug' },
  });
  assert.equal(c.broker.tls, { ca: '/etc/ca.pem', cert: '/etc/me.pem', key: '/etc/me.key', servername: 'broker' });
  assert.equal(
    [c.broker.endpoints, c.broker.reconnectDelayS, c.broker.maxReconnectDelayS, c.broker.inboxes],
    [['broker-2.example:5671', '[::1]:5671'], 2, 30, 'shared'],
  );
  assert.equal(c.peers, [
    { name: 'vpp-acme', role: 'aggregator' },
    { name: 'dso.local', role: 'dso' },
  ]);
  assert.equal(c.devices[0]?.signals, [
    { name: 'p', unit: 'kW', desc: '', range: [-5, 0] },
    { name: 'q', unit: 'kvar', desc: '' },
  ]);
  assert.equal(c.devices[0]?.meter, { kind: 'csv', path: 'pv.csv', loop: true });
  assert.equal(c.devices[1]?.meter, {
    kind: 'command',
    command: ['/usr/bin/hp', '--json'],
    timeoutMs: 5000,
    intervalS: 30,
  });
  assert.equal(c.devices[1]?.actuator, { kind: 'command', command: ['/usr/bin/hp-switch'], timeoutMs: 200 });
  assert.equal(c.devices[2]?.meter, { kind: 'file', path: '/run/ev', scale: 0.001, signal: 'p' });
  assert.equal(c.devices[2]?.actuator, { kind: 'file', path: '/run/ev-relay', on: 'ON', off: 'OFF' });
  assert.equal(c.crypto, { keyring: '/etc/ebadge/keyring.json', privateKey: '/etc/ebadge/hub.key', backend: 'auto' });
  assert.equal(
    [c.topology, c.declareExchanges, c.resolutionS, c.historyHours, c.allowClockChange, c.log.level],
    ['queues', false, 900, 744, true, 'debug'],
  );
});

valid('PLAIN with another user needs a password file; guest and EXTERNAL do not', () => {
  refused(
    patched(['broker.username', 'heh-example']),
    '$.broker.passwordFile',
    'only the user "guest" has a default password',
    'nothing',
  );
  refused(
    patched(['broker.username', undefined], ['broker.url', 'amqp://heh-example@127.0.0.1']),
    '$.broker.passwordFile',
    'heh-example',
    'nothing',
  );
  const c = parseConfig(patched(['broker.username', 'heh-example'], ['broker.passwordFile', '/etc/ebadge/broker.pw']));
  assert.is(c.broker.passwordFile, '/etc/ebadge/broker.pw');
  assert.is(parseConfig(patched(['broker.username', undefined])).broker.username, undefined, 'no user at all is guest');
  const ext = parseConfig(
    patched(
      ['broker.username', 'heh-example'],
      ['broker.url', 'amqps://broker.example'],
      ['broker.external', true],
      ['broker.tls', { cert: 'c.pem', key: 'k.pem' }],
    ),
  );
  assert.is(ext.broker.external, true);
});

valid('budget: absent leaves the default; false; given values, the rest defaults', () => {
  assert.is(parseConfig(patched()).budget, undefined);
  assert.is(parseConfig(patched(['budget', false])).budget, false);
  assert.equal(parseConfig(patched(['budget', { messagesPerS: 5, messagesBurst: 20 }])).budget, {
    messagesPerS: 5,
    messagesBurst: 20,
    bytesPerS: 8 << 20,
    bytesBurst: 32 << 20,
  });
});

const mistakes = suite('config: mistakes');

mistakes('missing name', () => {
  refused(patched(['name', undefined]), '$.name', 'an entity name', 'nothing');
});

mistakes('a name that is not an entity name', () => {
  refused(patched(['name', 'heh example']), '$.name', 'an entity name', '"heh example"');
  refused(patched(['name', '-heh']), '$.name', 'an entity name', '"-heh"');
  refused(patched(['name', 'h'.repeat(202)]), '$.name', 'an entity name', /^"h{60}\.\.\."$/);
  assert.is(parseConfig(patched(['name', 'h'.repeat(201)])).name.length, 201);
});

mistakes('unknown top-level key: the typo "peer" is named before the missing "peers"', () => {
  const c = patched(['peer', [{ name: 'vpp-x' }]], ['peers', undefined]);
  const err = refused(
    c,
    '$.peer',
    'one of the keys name, broker, peers,',
    'unknown key "peer" (did you mean "peers"?)',
  );
  assert.ok(err.expected.includes('allowClockChange'), err.expected);
});

mistakes('budget: wrong values name their path', () => {
  refused(patched(['budget', true]), '$.budget', 'an object', 'true');
  refused(patched(['budget', { messagesPerS: 0 }]), '$.budget.messagesPerS', 'a number above 0', '0');
  refused(patched(['budget', { messagesBurst: 0.5 }]), '$.budget.messagesBurst', 'a number of at least 1', '0.5');
  refused(
    patched(['budget', { bytesBurst: 1 << 20 }]),
    '$.budget.bytesBurst',
    'a number of at least 1048716 (the largest body the hub accepts)',
    '1048576',
  );
  refused(patched(['budget', { messages: 5 }]), '$.budget.messages', 'one of the keys messagesPerS', /unknown key/);
});

mistakes('unknown nested keys name their full path', () => {
  refused(
    patched(['devices.1.meter.peak', 5]),
    '$.devices[1].meter.peak',
    'kind, seed, profile, peakKw',
    'unknown key "peak" (did you mean "peakKw"?)',
  );
  refused(
    patched(['broker.tls', { ca: 'ca.pem', certfile: 'x' }], ['broker.url', 'amqps://b']),
    '$.broker.tls.certfile',
    'ca, cert, key, servername',
    /^unknown key "certfile"/,
  );
  refused(patched(['log.Level', 'debug']), '$.log.Level', 'level', 'unknown key "Level" (did you mean "level"?)');
  refused(
    patched(['devices.0.signals', [{ name: 'p', units: 'W' }]]),
    '$.devices[0].signals[0].units',
    'name, unit, desc, range',
    /^unknown key "units"/,
  );
  refused(patched(['devices.0.my key', 1]), '$.devices[0]["my key"]', 'name, classes', 'unknown key "my key"');
});

mistakes('wrong type: a string for an integer', () => {
  refused(patched(['resolutionS', '60']), '$.resolutionS', 'an integer from 1 to 3600', '"60"');
  refused(patched(['broker.prefetch', '10']), '$.broker.prefetch', 'an integer from 1 to 1000', '"10"');
  refused(patched(['broker.inboxes', 'per_peer']), '$.broker.inboxes', 'one of "per-peer", "shared"', '"per_peer"');
  refused(patched(['broker.inboxes', true]), '$.broker.inboxes', 'one of "per-peer", "shared"', 'true');
  refused(patched(['declareExchanges', 'yes']), '$.declareExchanges', 'true or false', '"yes"');
  refused(patched(['broker', 'amqp://127.0.0.1']), '$.broker', 'an object', '"amqp://127.0.0.1"');
  refused(patched(['peers', { name: 'vpp-x' }]), '$.peers', 'an array', 'an object');
});

mistakes('a non-integer where an integer is needed', () => {
  refused(patched(['broker.prefetch', 2.5]), '$.broker.prefetch', 'an integer', '2.5');
  refused(patched(['devices.0.meter.seed', 1.5]), '$.devices[0].meter.seed', 'an integer', '1.5');
  refused(patched(['broker.heartbeatS', 7.5]), '$.broker.heartbeatS', 'an integer from 5 to 600', '7.5');
});

mistakes('numbers that are not finite', () => {
  refused(patched(['fsyncIntervalS', Infinity]), '$.fsyncIntervalS', 'an integer', 'Infinity');
  refused(patched(['devices.1.maxPowerKw', NaN]), '$.devices[1].maxPowerKw', 'greater than 0', 'NaN');
  // Finite but past any home device: two of them made the hub's capacity Infinity, and every capacity query failed.
  refused(patched(['devices.1.maxPowerKw', 1e308]), '$.devices[1].maxPowerKw', 'at most 100000', '1e+308');
  refused(patched(['devices.1.meter.peakKw', 100_001]), '$.devices[1].meter.peakKw', 'at most 100000', '100001');
  refused(
    patched(['broker.heartbeatS', -Infinity]),
    '$.broker.heartbeatS',
    'an integer from 5 to 600, or 0',
    '-Infinity',
  );
});

mistakes('out of range', () => {
  refused(patched(['broker.heartbeatS', 601]), '$.broker.heartbeatS', 'an integer from 5 to 600, or 0', '601');
  refused(patched(['broker.heartbeatS', 2]), '$.broker.heartbeatS', 'an integer from 5 to 600, or 0', '2');
  refused(patched(['broker.reconnectDelayS', 1]), '$.broker.reconnectDelayS', 'a number from 2 to 600', '1');
  refused(
    patched(['broker.reconnectDelayS', 10], ['broker.maxReconnectDelayS', 5]),
    '$.broker.maxReconnectDelayS',
    'from reconnectDelayS (10)',
    '5',
  );
  refused(
    patched(['broker.endpoints', ['127.0.0.1:5672', 'broker-2']]),
    '$.broker.endpoints[1]',
    'a "host:port" string',
    '"broker-2"',
  );
  refused(
    patched(['broker.endpoints', ['127.0.0.1:99999']]),
    '$.broker.endpoints[0]',
    'port 1 to 65535',
    '"127.0.0.1:99999"',
  );
  refused(
    patched(['broker.endpoints', '127.0.0.1:5672']),
    '$.broker.endpoints',
    'an array of "host:port" strings',
    '"127.0.0.1:5672"',
  );
  refused(patched(['broker.prefetch', 0]), '$.broker.prefetch', 'an integer from 1 to 1000', '0');
  refused(patched(['fsyncIntervalS', 3601]), '$.fsyncIntervalS', 'an integer from 1 to 3600', '3601');
  refused(patched(['devices.0.meter.peakKw', 0]), '$.devices[0].meter.peakKw', 'greater than 0', '0');
  refused(patched(['topology', 'exchange']), '$.topology', '"exchanges", "queues"', '"exchange"');
});

mistakes('historyHours below a day or above 31 days', () => {
  refused(patched(['historyHours', 12]), '$.historyHours', 'an integer from 24 to 744', '12');
  refused(patched(['historyHours', 745]), '$.historyHours', 'an integer from 24 to 744', '745');
});

mistakes('a resolution that does not divide the hour', () => {
  refused(patched(['resolutionS', 7]), '$.resolutionS', 'divides 3600', '7');
  refused(patched(['resolutionS', 7200]), '$.resolutionS', 'divides 3600', '7200');
  for (const ok of [1, 15, 60, 900, 3600]) assert.is(parseConfig(patched(['resolutionS', ok])).resolutionS, ok);
});

mistakes('empty or missing peers and devices', () => {
  refused(patched(['peers', []]), '$.peers', 'at least one peer', 'an empty array');
  refused(patched(['peers', undefined]), '$.peers', 'at least one peer', 'nothing');
  refused(patched(['devices', []]), '$.devices', 'at least one device', 'an empty array');
});

mistakes('duplicate peer, a peer named as the hub, duplicate device, duplicate signal', () => {
  refused(
    patched(['peers', [{ name: 'vpp-a' }, { name: 'vpp-b' }, { name: 'vpp-a', role: 'dso' }]]),
    '$.peers[2].name',
    '$.peers[0]',
    '"vpp-a"',
  );
  refused(patched(['peers', [{ name: 'heh-example' }]]), '$.peers[0].name', "the hub's own", '"heh-example"');
  refused(patched(['devices.1.name', 'meter']), '$.devices[1].name', '$.devices[0]', '"meter"');
  refused(
    patched(['devices.0.signals', [{ name: 'p' }, { name: 'p', unit: 'W' }]]),
    '$.devices[0].signals[1].name',
    'signals[0]',
    '"p"',
  );
  refused(patched(['peers.0.role', 'vpp']), '$.peers[0].role', '"aggregator", "dso", "tso", "operator"', '"vpp"');
  refused(patched(['devices.0.name', '1st']), '$.devices[0].name', 'a letter', '"1st"');
});

mistakes('unknown meter or actuator kind: the kind is checked first and the known ones listed', () => {
  refused(
    patched(['devices.1.meter', { kind: 'modbus', address: 3 }]),
    '$.devices[1].meter.kind',
    '"simulated", "csv", "command", "file"',
    '"modbus"',
  );
  refused(
    patched(['devices.1.meter', { path: 'x.csv' }]),
    '$.devices[1].meter.kind',
    '"simulated", "csv", "command", "file"',
    'nothing',
  );
  refused(
    patched(['devices.1.actuator.kind', 'relay']),
    '$.devices[1].actuator.kind',
    '"simulated", "command", "file"',
    '"relay"',
  );
  refused(
    patched(['devices.1.actuator.seed', 1]),
    '$.devices[1].actuator.seed',
    'one of the keys kind',
    /^unknown key "seed"/,
  );
  refused(patched(['devices.0.meter', { kind: 'csv' }]), '$.devices[0].meter.path', 'a file path', 'nothing');
});

mistakes('a command that is not an argv array', () => {
  const meter = { kind: 'command', command: '/usr/bin/read-meter --json' };
  refused(
    patched(['devices.0.meter', meter]),
    '$.devices[0].meter.command',
    'without a shell',
    '"/usr/bin/read-meter --json"',
  );
  refused(
    patched(['devices.0.meter', { ...meter, command: [] }]),
    '$.devices[0].meter.command',
    'a non-empty array',
    'an empty array',
  );
  refused(
    patched(['devices.0.meter', { ...meter, command: ['/bin/x', 3] }]),
    '$.devices[0].meter.command[1]',
    'a non-empty string',
    '3',
  );
  refused(
    patched(['devices.1.actuator', { kind: 'command', command: 'relay on' }]),
    '$.devices[1].actuator.command',
    'without a shell',
    '"relay on"',
  );
});

mistakes('a file meter signal must be one of the device signals; on and off must differ', () => {
  refused(
    patched(['devices.0.meter', { kind: 'file', path: '/run/p', signal: 'q' }]),
    '$.devices[0].meter.signal',
    '"p"',
    '"q"',
  );
  refused(
    patched(['devices.0.meter', { kind: 'file', path: '/run/p', scale: 0 }]),
    '$.devices[0].meter.scale',
    'other than 0',
    '0',
  );
  refused(
    patched(['devices.1.actuator', { kind: 'file', path: '/run/r', on: '1', off: '1' }]),
    '$.devices[1].actuator.off',
    'other than on',
    '"1"',
  );
});

mistakes('a signal range with min above max, or not a pair of numbers', () => {
  refused(
    patched(['devices.0.signals', [{ name: 'p', range: [5, 1] }]]),
    '$.devices[0].signals[0].range',
    'min <= max',
    '[5, 1]',
  );
  refused(
    patched(['devices.0.signals', [{ name: 'p', range: [0, 1, 2] }]]),
    '$.devices[0].signals[0].range',
    'two numbers',
    'an array of 3',
  );
  refused(
    patched(['devices.0.signals', [{ name: 'p', range: [0, '9'] }]]),
    '$.devices[0].signals[0].range[1]',
    'a number',
    '"9"',
  );
  assert.equal(
    parseConfig(patched(['devices.0.signals', [{ name: 'p', range: [2, 2] }]])).devices[0]?.signals[0]?.range,
    [2, 2],
  );
});

mistakes('the broker URL: scheme, query', () => {
  refused(
    patched(['broker.url', 'http://127.0.0.1']),
    '$.broker.url',
    'an amqp://, amqps://, mqtt:// or mqtts:// URL',
    '"http://127.0.0.1"',
  );
  refused(
    patched(['broker.url', 'amqp://127.0.0.1?heartbeat=5']),
    '$.broker.url',
    'without a query',
    '"amqp://127.0.0.1?heartbeat=5"',
  );
  refused(patched(['broker.tls', { ca: 'ca.pem' }]), '$.broker.url', 'amqps://', '"amqp://127.0.0.1:5672"');
  // Both passed the check and then failed the run: a URIError out of the client (exit 70), a connect to port 0.
  refused(
    patched(['broker.url', 'amqp://127.0.0.1/%zz']),
    '$.broker.url',
    'a vhost in valid percent-encoding',
    '"amqp://127.0.0.1/%zz"',
  );
  refused(
    patched(['broker.url', 'amqp://127.0.0.1:0/']),
    '$.broker.url',
    'a port from 1 to 65535',
    '"amqp://127.0.0.1:0/"',
  );
  refused(
    patched(['broker.username', 'bob'], ['broker.passwordFile', 'pw'], ['broker.url', 'amqp://alice@h']),
    '$.broker.username',
    '"alice"',
    '"bob"',
  );
});

mistakes('a password in the URL is refused and never quoted', () => {
  const urls = [
    'amqp://heh-example:hunter2@127.0.0.1:5672',
    'amqps://u:hunter2@broker.example/vh?x=1',
    'amqp://:hunter2@h',
    'amqp://u:hunter2@bad host',
  ];
  for (const url of urls) {
    const err = refused(patched(['broker.url', url]), '$.broker.url', 'passwordFile', 'a password in the URL');
    assert.not.ok(err.message.includes('hunter2'), err.message);
    assert.not.ok(err.stack?.includes('hunter2'), 'nor in the stack');
  }
  // Wherever else such a URL is written by mistake, the password is masked.
  const elsewhere = refused(
    patched(['broker.heartbeatS', 'amqp://heh:hunter2@127.0.0.1']),
    '$.broker.heartbeatS',
    'an integer',
    '"amqp://heh:***@127.0.0.1"',
  );
  assert.not.ok(elsewhere.message.includes('hunter2'), elsewhere.message);
  // The values of password* fields are never quoted, even when wrong.
  const pw = refused(patched(['broker.passwordFile', ['hunter2']]), '$.broker.passwordFile', 'a file path', 'an array');
  assert.not.ok(pw.message.includes('hunter2'), pw.message);
  const nul = refused(
    patched(['broker.passwordFile', 'hunter2\0']),
    '$.broker.passwordFile',
    'a file path',
    'a string',
  );
  assert.not.ok(nul.message.includes('hunter2'), nul.message);
});

mistakes('EXTERNAL without a client certificate, or without TLS', () => {
  const ext: [string, unknown][] = [
    ['broker.url', 'amqps://broker.example'],
    ['broker.external', true],
  ];
  refused(patched(...ext), '$.broker.tls', 'cert and key', 'nothing');
  refused(
    patched(...ext, ['broker.tls', { ca: 'ca.pem', key: 'k.pem' }]),
    '$.broker.tls.cert',
    'client certificate',
    'nothing',
  );
  refused(patched(...ext, ['broker.tls', { cert: 'c.pem' }]), '$.broker.tls.key', 'key file', 'nothing');
  refused(
    patched(['broker.external', true], ['broker.tls', { cert: 'c.pem', key: 'k.pem' }]),
    '$.broker.url',
    'amqps://',
    '"amqp://127.0.0.1:5672"',
  );
  // Over MQTT the same: TLS files and certificate logins want mqtts://, and say so; mqtts:// takes them.
  const mqtt = (url: string): [string, unknown][] => [
    ['broker.url', url],
    ['broker.external', true],
    ['broker.tls', { cert: 'c.pem', key: 'k.pem' }],
  ];
  refused(patched(...mqtt('mqtt://b')), '$.broker.url', 'an mqtts:// URL (broker.tls is given)', '"mqtt://b"');
  refused(
    patched(['broker.url', 'mqtt://b'], ['broker.tls', { ca: 'ca.pem' }]),
    '$.broker.url',
    'an mqtts:// URL',
    '"mqtt://b"',
  );
  const c = parseConfig(patched(...mqtt('mqtts://b')));
  assert.equal([c.broker.external, c.broker.tls], [true, { cert: 'c.pem', key: 'k.pem' }]);
  // AMQP's keys with an MQTT URL: hub-mqtt.js would take them and use none (no cluster failover, no topology).
  const amqpOnly: [string, string, unknown, string][] = [
    ['broker.endpoints', '$.broker.endpoints', ['10.0.0.2:5672'], 'an array'],
    ['broker.inboxes', '$.broker.inboxes', 'shared', '"shared"'],
    ['topology', '$.topology', 'queues', '"queues"'],
    ['declareExchanges', '$.declareExchanges', false, 'false'],
  ];
  for (const [key, at, value, found] of amqpOnly) {
    refused(patched(['broker.url', 'mqtt://b'], [key, value]), at, 'AMQP only: hub-mqtt.js has none', found);
    parseConfig(patched([key, value])); // the AMQP hub's
  }
  parseConfig(patched(['broker.url', 'mqtt://b'], ['broker.endpoints', []]));
});

mistakes('crypto and log sections', () => {
  refused(patched(['crypto', { keyring: 'k.json' }]), '$.crypto.privateKey', 'a file path', 'nothing');
  refused(
    patched(['crypto', { keyring: 'k.json', privateKey: 'p.key', backend: 'openssl' }]),
    '$.crypto.backend',
    '"auto", "node", "noble"',
    '"openssl"',
  );
  refused(patched(['log.level', 'verbose']), '$.log.level', '"debug", "info", "warn", "error"', '"verbose"');
  refused(patched(['stateDir', '']), '$.stateDir', 'a directory path', 'an empty string');
});

mistakes('not an object at all', () => {
  refused(null, '$', 'an object', 'null');
  refused([exampleConfig(STATE)], '$', 'an object', 'an array');
  const err = refusal(() => parseConfig(42, '/etc/ebadge/hub.json'), 'file name');
  assert.is(err.message, '/etc/ebadge/hub.json: $: expected an object, found 42');
  assert.is(err.file, '/etc/ebadge/hub.json');
  assert.is(err.name, 'ConfigError');
  assert.instance(err, Error);
});

const files = suite('config: files');

files('a valid file loads as its parsed value would', async () => {
  await inTempDir((dir) => {
    const file = path.join(dir, 'hub.json');
    fs.writeFileSync(file, `\ufeff${JSON.stringify(exampleConfig(STATE), null, 2)}\n`);
    assert.equal(loadConfig(file), parseConfig(exampleConfig(STATE)));
  });
});

files('a missing file, a directory', async () => {
  await inTempDir((dir) => {
    const missing = path.join(dir, 'nope.json');
    const err = refusal(() => loadConfig(missing), 'missing');
    assert.is(err.path, '$');
    assert.is(err.found, 'no file (ENOENT)');
    assert.is(err.message, `${missing}: $: expected a readable JSON file, found no file (ENOENT)`);
    assert.is(refusal(() => loadConfig(dir), 'directory').found, 'a directory (EISDIR)');
  });
});

files('a file without an end (/dev/zero): refused once past 16 MiB, not read until memory runs out', () => {
  if (!fs.existsSync('/dev/zero')) return;
  const err = refusal(() => loadConfig('/dev/zero'), '/dev/zero');
  assert.is(err.message, '/dev/zero: $: expected a JSON file of at most 16 MiB, found a larger one (not read)');
});

files('invalid JSON: the line and column of the error, and nothing of the text', async () => {
  await inTempDir((dir) => {
    const file = path.join(dir, 'hub.json');
    const cases: [string, number, number][] = [
      ['{\n  "name": "heh-x",\n}\n', 3, 1], // trailing comma
      ['{\n  "name": "heh-x"\n  "peers": []\n}', 3, 3], // missing comma
      ['{\n\t"broker": { "url": \'amqp://u:hunter2@h\' }\n}', 2, 21], // single quotes
      ['{"a": [1, 2,, 3]}', 1, 13],
      ['{"a": 01}', 1, 8],
      ['{"a": tru}', 1, 10],
      ['{"a": "x\ny"}', 1, 9], // a raw newline inside a string
      ['{"a": "\\q"}', 1, 9],
      ['{"a": 1} x', 1, 10],
      ['', 1, 1],
    ];
    for (const [text, line, column] of cases) {
      fs.writeFileSync(file, text);
      const err = refusal(() => loadConfig(file), JSON.stringify(text));
      assert.is(err.path, '$');
      assert.is(err.expected, 'valid JSON');
      assert.match(
        err.found,
        new RegExp(`^invalid JSON at line ${line} column ${column}\\b`),
        `${JSON.stringify(text)}: ${err.found}`,
      );
      assert.not.ok(err.message.includes('hunter2'), err.message);
    }
    fs.writeFileSync(file, '{"name": "heh-x", "peers": [');
    assert.is(
      refusal(() => loadConfig(file), 'truncated').found,
      'invalid JSON at line 1 column 29 (the text ends too early)',
    );
  });
});

files('the error position agrees with JSON.parse wherever the platform states one', () => {
  const texts = [
    '{"a":1,}',
    '{"a" 1}',
    '[1 2]',
    '{"a":-}',
    '{"a":1.}',
    '{"a":1e}',
    '{"a":"\\u12G4"}',
    '[nul]',
    '{,}',
    '{"a":[}',
    '{"a":1]',
  ];
  let compared = 0;
  for (const text of texts) {
    let message = '';
    try {
      JSON.parse(text);
    } catch (err) {
      message = (err as Error).message;
    }
    const stated = /at position (\d+)/.exec(message)?.[1];
    if (stated === undefined) continue;
    compared++;
    const r = new RegExp(`^invalid JSON at line 1 column ${Number(stated) + 1}\\b`);
    const found = refusal(() => loadViaTemp(text), text).found;
    assert.match(found, r, `${text}: JSON.parse says "${message}", we say "${found}"`);
  }
  assert.ok(compared >= 3, `only ${compared} positions stated by JSON.parse`);
});

function loadViaTemp(text: string): unknown {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-config-'));
  try {
    fs.writeFileSync(path.join(dir, 'hub.json'), text);
    return loadConfig(path.join(dir, 'hub.json'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

files('a key written twice is refused with its path', () => {
  const text = JSON.stringify(exampleConfig(STATE)).replace('"name":"boiler"', '"name":"boiler","name":"boiler2"');
  const err = refusal(() => loadViaTemp(text), 'duplicate');
  assert.is(err.path, '$.devices[1].name');
  assert.is(err.found, 'the key "name" a second time');
});

valid.run();
mistakes.run();
files.run();
