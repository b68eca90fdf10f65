/**
 * The hub state file at load: a damaged one is kept as hub-state.json.corrupt-<time> and repaired (entries failing
 * their check dropped, each named by its JSON path; everything when the text is not JSON), the repaired state
 * written at once; one that cannot be read, or of a later format, is a ConfigError naming the file (exit 78).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '../../../src/device/config/index.js';
import { type HubState, StateStore } from '../../../src/device/state.js';
import { injectedDisk } from '../../helpers/disk.js';

const NOW = Date.UTC(2026, 11, 3, 16, 14, 0, 123);
const COPY = 'hub-state.json.corrupt-20261203T161400Z';

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-state-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A state with one entry of every kind, each field valid. */
const good = (): HubState => ({
  format: 'heh-hub-state/1',
  mode: 'passive',
  subscriptions: [
    { requester: 'vpp', interval: 900, resolution: 60, signals: ['m.p'], next: NOW, requestId: 'r1', hehId: null },
  ],
  realtime: [{ requester: 'vpp', severity: 2 }],
  prices: [{ kind: 'load', from: NOW, to: NOW + 3_600_000, price: 0.2, sender: 'vpp' }],
  activations: [
    {
      id: 'a1',
      requester: 'vpp',
      modificationCount: 0,
      from: NOW,
      to: NOW + 900_000,
      quantity: 1.5,
      device: 'boiler',
      decision: 'accepted',
      decisionMessage: { msg: 'accept_activation' },
      phase: 'running',
    },
  ],
  events: [{ time: NOW, severity: 0, type: 'started' }],
  clockOffsetS: 2,
  peerKeys: [{ peer: 'vpp', x25519: 'A'.repeat(43), notBefore: NOW, notAfter: NOW + 3_600_000 }],
});

const open = (dir: string): StateStore => StateStore.open(dir, { now: () => NOW, retryMs: 10 });
const file = (dir: string): string => path.join(dir, 'hub-state.json');

const s = suite('hub state file');

s('over 1,000 events, the oldest of the lowest severity go first: a fault outlives any number of routine events', () =>
  inTempDir(async (dir) => {
    const store = open(dir);
    await store.update((st) => {
      st.events.push({ time: NOW, severity: 3, type: 'storage_lost', count: 2 });
      st.events.push({ time: NOW + 1, severity: 1, type: 'clock_set' });
      for (let i = 0; i < 999; i++) st.events.push({ time: NOW + 2 + i, severity: 0, type: 'network_up' });
    });
    const events = store.state.events;
    assert.is(events.length, 1000);
    assert.equal(
      events.slice(0, 2).map((e) => e.type),
      ['storage_lost', 'clock_set'],
    );
    assert.is(events[2]?.time, NOW + 3, 'the oldest routine event went');
    await store.update((st) => {
      for (let i = 0; i < 1500; i++) st.events.push({ time: NOW + 5000 + i, severity: 1, type: 'clock_set' });
    });
    assert.is(store.state.events.length, 1000);
    assert.is(store.state.events[0]?.type, 'storage_lost');
    assert.ok(store.state.events.slice(1).every((e) => e.type === 'clock_set' && e.time >= NOW + 5000 + 501));
    await store.flush();
  }),
);

s('a good file loads as it is, no damage; a missing one is a fresh hub', () =>
  inTempDir(async (dir) => {
    assert.equal(open(dir).state.subscriptions, []);
    fs.writeFileSync(file(dir), JSON.stringify(good()));
    const store = open(dir);
    assert.is(store.damage, undefined);
    assert.equal(store.state, good());
  }),
);

s(
  'a realtime subscription\'s severity is a threshold: "set very high to disable" (data model §1.4) loads as it was',
  () =>
    inTempDir(async (dir) => {
      // Saved as get_energy_events_realtime took it; reported as damage at the next start, before (a false alarm).
      const state = {
        ...good(),
        realtime: [
          { requester: 'vpp', severity: 99 },
          { requester: 'dso', severity: 2 ** 40 },
        ],
      };
      fs.writeFileSync(file(dir), JSON.stringify(state));
      const store = open(dir);
      assert.is(store.damage, undefined);
      assert.equal(store.state.realtime, state.realtime);
      // An event's own severity stays 0..3, and a threshold is still a whole number >= 0.
      fs.writeFileSync(
        file(dir),
        JSON.stringify({
          ...good(),
          realtime: [{ requester: 'vpp', severity: -1 }],
          events: [{ time: NOW, severity: 4, type: 'x' }],
        }),
      );
      const damaged = open(dir);
      assert.equal(damaged.damage?.problems, [
        '$.realtime[0].severity: expected a severity threshold (a whole number >= 0), found -1; the entry is dropped',
        '$.events[0].severity: expected a severity 0..3, found 4; the entry is dropped',
      ]);
      await damaged.flush();
    }),
);

s('text that is not JSON (a truncated file): named, kept as .corrupt-<time>, the hub starts afresh and says so', () =>
  inTempDir(async (dir) => {
    const text = JSON.stringify(good());
    fs.writeFileSync(file(dir), text.slice(0, 100));
    const store = open(dir);
    assert.ok(store.damage?.reset);
    assert.equal(store.damage?.problems, ['$: invalid JSON at line 1 column 101 (the text ends too early)']);
    assert.is(store.damage?.copy, path.join(dir, COPY));
    assert.equal(store.state.activations, []);
    await store.flush();
    assert.equal(fs.readFileSync(path.join(dir, COPY), 'utf8'), text.slice(0, 100), 'the damaged file, byte for byte');
    assert.equal(JSON.parse(fs.readFileSync(file(dir), 'utf8')).format, 'heh-hub-state/1');
    assert.is(open(dir).damage, undefined, 'the next start finds a good file');
  }),
);

s('every field of every entry is checked at load: a wrong-typed one drops its entry alone, named by its path', () =>
  inTempDir(async (dir) => {
    const wrong: [string, string, unknown][] = [
      ['subscriptions', 'requester', 7],
      ['subscriptions', 'interval', 'abc'],
      ['subscriptions', 'interval', 0],
      ['subscriptions', 'resolution', 1.5],
      ['subscriptions', 'signals', 'm.p'],
      ['subscriptions', 'next', '2026-12-03'],
      ['subscriptions', 'requestId', 5],
      ['subscriptions', 'hehId', 5],
      ['realtime', 'requester', null],
      ['realtime', 'severity', 1.5],
      ['prices', 'kind', 'water'],
      ['prices', 'from', null],
      ['prices', 'to', 'later'],
      ['prices', 'price', '0.2'],
      ['prices', 'device', ''],
      ['prices', 'sender', undefined],
      ['activations', 'id', 1],
      ['activations', 'modificationCount', -1],
      ['activations', 'from', Number.NaN],
      ['activations', 'quantity', '1.5'],
      ['activations', 'device', 3],
      ['activations', 'decision', 'maybe'],
      ['activations', 'decisionMessage', 'accept'],
      ['activations', 'phase', 'paused'],
      ['events', 'time', 'now'],
      ['events', 'severity', -1],
      ['events', 'type', ''],
      ['events', 'end', 'never'],
      ['peerKeys', 'peer', ''],
      ['peerKeys', 'x25519', 'AAAA'],
      ['peerKeys', 'notBefore', '2026-12-04'],
      ['peerKeys', 'notAfter', null],
    ];
    for (const [list, field, value] of wrong) {
      const state = good() as unknown as Record<string, Record<string, unknown>[]>;
      const second = { ...state[list]![0]!, [field]: value };
      if (value === undefined) delete second[field];
      state[list]!.push(second);
      fs.writeFileSync(file(dir), JSON.stringify(state));
      const store = open(dir);
      const where = `$.${list}[1].${field}`;
      assert.equal(store.damage?.problems.length, 1, `${where}: ${store.damage?.problems.join(' | ')}`);
      assert.match(store.damage!.problems[0]!, `${where}: expected `);
      assert.match(store.damage!.problems[0]!, /the entry is dropped$/);
      assert.not.ok(store.damage?.reset);
      assert.equal(
        (store.state as unknown as Record<string, unknown[]>)[list],
        (good() as unknown as Record<string, unknown[]>)[list],
        `${where}: the good entry is kept, the wrong one dropped`,
      );
      await store.flush();
      fs.rmSync(path.join(dir, COPY));
    }
    const top = { ...good(), mode: 'turbo', clockOffsetS: 'x', prices: {} } as unknown;
    fs.writeFileSync(file(dir), JSON.stringify(top));
    const store = open(dir);
    assert.equal(store.damage?.problems, [
      '$.mode: expected "normal", "passive" or "off", found "turbo"; normal used',
      '$.clockOffsetS: expected seconds, found "x"; 0 used',
      '$.prices: expected a list, found an object; dropped',
    ]);
    assert.equal([store.state.mode, store.state.clockOffsetS, store.state.prices], ['normal', 0, []]);
    assert.equal(store.state.activations, good().activations);
    // The repair is being written: let it land before the directory goes (a vanished one would be re-created).
    await store.flush();
  }),
);

s('a file that cannot be read, or of a later format: a ConfigError naming the file, nothing touched', () =>
  inTempDir(async (dir) => {
    fs.mkdirSync(file(dir));
    try {
      open(dir);
      assert.unreachable('a directory where the file should be');
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.match((err as Error).message, `${file(dir)}: $: expected a readable hub state file`);
      assert.match((err as Error).message, /found EISDIR/);
    }
    fs.rmdirSync(file(dir));
    fs.writeFileSync(file(dir), JSON.stringify({ ...good(), format: 'heh-hub-state/2' }));
    try {
      open(dir);
      assert.unreachable('a later format');
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.match((err as Error).message, /\$\.format: expected "heh-hub-state\/1", found "heh-hub-state\/2"/);
    }
    assert.equal(fs.readdirSync(dir), ['hub-state.json']);
  }),
);

s(
  'a damaged file on a read-only disk stays where it is until the disk takes writes: moved first, then replaced',
  async () => {
    const disk = injectedDisk();
    try {
      const dir = disk.root;
      fs.writeFileSync(file(dir), '{"format":"heh-hub-state/1","mode":');
      await disk.readOnly();
      const store = open(dir);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(fs.readdirSync(dir), ['hub-state.json'], 'nothing renamed, nothing replaced');
      await disk.writable();
      await store.flush();
      assert.equal(fs.readdirSync(dir).sort(), ['hub-state.json', COPY]);
      assert.is(fs.readFileSync(path.join(dir, COPY), 'utf8'), '{"format":"heh-hub-state/1","mode":');
    } finally {
      await disk.dispose();
    }
  },
);

s.run();
