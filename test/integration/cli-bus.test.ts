/**
 * The operator CLI on the real broker: `ebadge send`, `request` and `listen` acting as an operator entity against a
 * hub connector; `listen` and `request` on an inbox where messages already wait (issue 12: every message is printed
 * exactly once or stays in the queue, none is acked unread); `validate` on good and bad lines; and dist/ebadge.js
 * bundled and run alone, with no node_modules.
 */

import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundle } from '../../build/bundle.js';
import { connect } from '../../src/amqp/index.js';
import { amqpBus } from '../../src/bus/index.js';
import { type Io, main } from '../../src/cli.js';
import type { Message } from '../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  nodeBackend,
  type PublicEntry,
  ReplayWindow,
  Sealer,
  SequenceReserver,
  writePrivateKeyFile,
} from '../../src/crypto/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { BusFixture, entity, NET_MS, until, withBus } from '../helpers/bus.js';
import { FaultProxy } from '../helpers/proxy.js';

const run = `${process.pid}-${Date.now().toString(36)}`;
const HUB = `heh-cli-${run}`;
const OPS = `ops-cli-${run}`;

function capture(stdin = ''): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l), stdin: async () => stdin };
}

/** Consumers of a queue, as the broker counts them. */
async function consumers(f: BusFixture, queue: string): Promise<number> {
  const ch = await f.channel();
  try {
    return (await ch.checkQueue(queue)).consumerCount;
  } catch {
    return 0; // not declared yet: listen declares its inbox once it is connected (the 404 closes this channel only)
  } finally {
    await ch.close().catch(() => undefined);
  }
}

async function cleanup(entities: string[], pairs: [string, string][]): Promise<void> {
  const conn = await connect(AMQP_URL);
  const ch = await conn.createChannel();
  for (const e of entities) for (const q of [`private-${e}-in`, `private-${e}-dead`]) await ch.queueDelete(q);
  for (const e of entities) await ch.exchangeDelete(`private-${e}-dlx`);
  for (const [a, b] of pairs) {
    await ch.exchangeDelete(`${a}-to-${b}`);
    await ch.exchangeDelete(`${b}-to-${a}`);
  }
  await conn.close();
}

const s = suite('ebadge CLI on the bus');

s(
  'send, request and listen as an operator entity; usage errors exit 2',
  timed(async () => {
    const hub = amqpBus({ name: HUB, peers: [OPS], url: AMQP_URL });
    const f = new BusFixture();
    const got: Message[] = [];
    hub.onSetClock((m) => {
      got.push(m);
    });
    hub.onGetReport(async (m, ctx) => {
      await ctx.reply({
        msg: 'report',
        from: m.from,
        to: m.to,
        resolution: m.resolution,
        values: { 'total.p': [1.5, 2.5] },
      });
    });
    // A peer's bug: a status report asked for, a report answered.
    hub.onGetStatusReport(async (m, ctx) => {
      await ctx.reply({ msg: 'report', from: m.from, to: m.to, resolution: 900, values: {} });
    });
    await hub.start();
    try {
      const common = ['--as', OPS, '--to', HUB, '--url', AMQP_URL];
      const sent = capture();
      assert.is(await main(['send', ...common, 'set_clock', 'offset=2.5'], sent), 0, sent.errors.join('\n'));
      assert.equal(sent.lines, [`sent set_clock to ${HUB}`]);

      const asked = capture();
      const code = await main(
        [
          'request',
          ...common,
          'get_report',
          'from=2026-11-26T10:00:00Z',
          'to=2026-11-26T10:30:00Z',
          'resolution=900',
          'signals=total.p',
        ],
        asked,
      );
      assert.is(code, 0, asked.errors.join('\n'));
      const reply = JSON.parse(asked.lines[0] as string) as Record<string, unknown>;
      assert.is(reply['msg'], 'report');
      assert.equal(reply['values'], { 'total.p': [1.5, 2.5] });
      assert.equal(
        got.map((m) => (m as Message<'set_clock'>).offset),
        [2.5],
      );

      const bad = capture();
      assert.is(await main(['send', ...common, 'set_clock', 'offset=soon'], bad), 2);
      assert.match(bad.errors.join('\n'), /set_clock\.offset/);
      assert.is(await main(['send', '--as', OPS, 'set_clock', 'offset=1'], capture()), 2, '--to missing');
      assert.is(await main(['send', ...common, 'launch_rockets'], capture()), 2, 'unknown type');
      assert.is(await main(['request', ...common, 'get_report', '--timeout', 'soon'], capture()), 2);

      // listen: the hub sends to the operator, the CLI prints one JSON line and stops after --count 1.
      const listened = capture();
      const listening = main(['listen', '--as', OPS, '--peer', HUB, '--url', AMQP_URL, '--count', '1'], listened);
      await until(async () => (await consumers(f, `private-${OPS}-in`)) > 0, `listen consuming private-${OPS}-in`);
      await hub.publish(OPS, { msg: 'set_smart_mode', mode: 'passive', reset: false } as Message);
      assert.is(await listening, 0, listened.errors.join('\n'));
      const line = JSON.parse(listened.lines[0] as string) as { from: string; type: string; message: { mode: string } };
      assert.equal([line.from, line.type, line.message.mode], [HUB, 'set_smart_mode', 'passive']);

      // An answer of another type fails the request, and is printed: what the peer said.
      const odd = capture();
      const status = [
        'get_status_report',
        'from=2026-11-26T10:00:00Z',
        'to=2026-11-26T10:30:00Z',
        'severity_threshold=0',
      ];
      assert.is(await main(['request', ...common, ...status], odd), 1);
      assert.is((JSON.parse(odd.lines[0] as string) as Record<string, unknown>)['msg'], 'report');
      assert.match(odd.errors.join('\n'), `${HUB} answered get_status_report with report: expected status_report`);
      // The bus then hands that message to the command's handlers as any other: printed, it is acked, not left for
      // a listen to print again.
      assert.not.match(odd.errors.join('\n'), 'left 1 other message');
      await until(async () => (await f.depth(`private-${OPS}-in`)) === 0, `nothing left in private-${OPS}-in`);
    } finally {
      await hub.close();
      await f.dispose();
      await cleanup([HUB, OPS], [[HUB, OPS]]);
    }
  }, 30_000),
);

/** The inbox of `ops`, declared as `ebadge send` would (consume: false), with a set_clock from `hub` per offset. */
async function waiting(f: BusFixture, ops: string, hub: string, offsets: number[]): Promise<string> {
  await f.connector({ name: ops, peers: [hub], consume: false });
  const inbox = `private-${ops}-in`;
  // An independent publisher (amqplib), as the hub would: the exchange names the sender.
  const ch = await (await f.amqp()).createConfirmChannel();
  for (const offset of offsets) {
    ch.publish(`${hub}-to-${ops}`, 'set_clock', Buffer.from(JSON.stringify({ msg: 'set_clock', offset })), {
      persistent: true,
      contentType: 'application/json',
      type: 'set_clock',
      messageId: randomUUID(),
    });
  }
  await ch.waitForConfirms();
  await ch.close();
  await until(
    async () => (await f.depth(inbox)) === offsets.length,
    `${offsets.length} messages waiting in ${inbox}`,
    NET_MS,
  );
  return inbox;
}

/**
 * `ebadge listen --count N` in-process. A run still going after `ms` is stopped as Ctrl-C would; `finished` says
 * whether it ended by itself. The offsets of the set_clock it printed.
 */
async function listenOnce(
  ops: string,
  hub: string,
  count: number,
  ms = 5_000,
): Promise<{ code: number; offsets: number[]; errors: string[]; finished: boolean }> {
  const io = capture();
  const abort = new AbortController();
  let finished = true;
  const timer = setTimeout(() => {
    finished = false;
    abort.abort();
  }, ms);
  try {
    const code = await main(
      ['listen', '--as', ops, '--peer', hub, '--url', AMQP_URL, '--count', String(count)],
      io,
      abort.signal,
    );
    const offsets = io.lines.map((l) => {
      const line = JSON.parse(l) as { from: string; type: string; message: { offset: number } };
      assert.equal([line.from, line.type], [hub, 'set_clock'], l);
      return line.message.offset;
    });
    return { code, offsets, errors: io.errors, finished };
  } finally {
    clearTimeout(timer);
  }
}

s(
  'issue 12: listen --count 1 three times on 3 waiting messages prints each exactly once; the queue empties only by printing',
  timed(
    () =>
      withBus(async (f) => {
        const ops = entity('ops');
        const hub = entity('heh');
        const inbox = await waiting(f, ops, hub, [1, 2, 3]);
        const printed: number[] = [];
        for (let run = 1; run <= 3; run++) {
          const r = await listenOnce(ops, hub, 1);
          assert.ok(
            r.finished,
            `listen run ${run} printed nothing within 5 s and was stopped; ${await f.depth(inbox)} message(s) left in ${inbox}`,
          );
          assert.is(r.code, 0, r.errors.join('\n'));
          assert.is(r.offsets.length, 1, `listen run ${run} printed ${JSON.stringify(r.offsets)}`);
          printed.push(...r.offsets);
          // The messages given back are requeued by the broker a moment after the command ended.
          await until(
            async () => (await f.depth(inbox)) === 3 - run,
            `after run ${run}, the ${3 - run} message(s) not printed back in ${inbox}`,
            NET_MS,
          );
        }
        assert.equal(
          [...printed].sort(),
          [1, 2, 3],
          `printed ${JSON.stringify(printed)}: each waiting message exactly once`,
        );
        assert.is(await f.depth(inbox), 0);
        assert.is(await f.depth(`private-${ops}-dead`), 0, 'nothing was dead-lettered');
      }),
    30_000,
  ),
);

s(
  'listen --count 2 with 5 waiting: 2 printed, the 3 beyond the count stay in the queue, and the next listen prints them',
  timed(
    () =>
      withBus(async (f) => {
        const ops = entity('ops');
        const hub = entity('heh');
        const inbox = await waiting(f, ops, hub, [1, 2, 3, 4, 5]);
        const first = await listenOnce(ops, hub, 2);
        assert.ok(first.finished, `listen --count 2 printed ${JSON.stringify(first.offsets)} and was stopped`);
        assert.is(first.code, 0, first.errors.join('\n'));
        assert.is(first.offsets.length, 2, `printed ${JSON.stringify(first.offsets)}`);
        await until(async () => (await f.depth(inbox)) === 3, `the 3 messages not printed back in ${inbox}`, NET_MS);
        const second = await listenOnce(ops, hub, 3);
        assert.ok(second.finished, `listen --count 3 printed ${JSON.stringify(second.offsets)} and was stopped`);
        assert.is(second.code, 0, second.errors.join('\n'));
        assert.equal(
          [...first.offsets, ...second.offsets].sort(),
          [1, 2, 3, 4, 5],
          'every message printed exactly once over the two runs',
        );
        assert.is(await f.depth(inbox), 0);
        assert.is(await f.depth(`private-${ops}-dead`), 0);
      }),
    30_000,
  ),
);

s(
  'request takes its reply and leaves the messages that were waiting in the inbox there, unread',
  timed(
    () =>
      withBus(async (f) => {
        const ops = entity('ops');
        const hub = entity('heh');
        const h = f.create({ name: hub, peers: [ops] });
        h.onGetReport(async (m, ctx) => {
          await ctx.reply({
            msg: 'report',
            from: m.from,
            to: m.to,
            resolution: m.resolution,
            values: { 'total.p': [7] },
          });
        });
        await f.start();
        const inbox = await waiting(f, ops, hub, [1, 2]);
        const asked = capture();
        const code = await main(
          [
            'request',
            ...['--as', ops, '--to', hub, '--url', AMQP_URL],
            'get_report',
            'from=2026-11-26T10:00:00Z',
            'to=2026-11-26T10:15:00Z',
            'resolution=900',
            'signals=total.p',
          ],
          asked,
        );
        assert.is(code, 0, asked.errors.join('\n'));
        assert.is(asked.lines.length, 1);
        assert.equal((JSON.parse(asked.lines[0] as string) as { values: unknown }).values, { 'total.p': [7] });
        await until(async () => (await f.depth(inbox)) === 2, `the 2 waiting messages back in ${inbox}`, NET_MS);
        assert.equal(asked.errors.slice(1), [
          `left 2 other message(s) to ${ops} in the queue, unread (ebadge listen prints them)`,
        ]);
        // The first line says whom it logged in as: the test broker's guest, which the URL names.
        assert.match(asked.errors[0] as string, /connecting to .* as guest, because --url names it/);
        const r = await listenOnce(ops, hub, 2);
        assert.ok(r.finished, 'listen printed them');
        assert.equal([...r.offsets].sort(), [1, 2]);
        assert.is(await f.depth(inbox), 0);
      }),
    30_000,
  ),
);

s(
  'a sealed send makes its --state-dir (0700) and sends a nullable field given as null as null (issue 14, item 10)',
  timed(async () => {
    const hubName = `heh-cli-sealed-${run}`;
    const opsName = `ops-cli-sealed-${run}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'cli-sealed-'));
    const hubId = generateIdentity(hubName, nodeBackend, Date.now() - 60_000);
    const opsId = generateIdentity(opsName, nodeBackend, Date.now() - 60_000);
    const entryOf = (e: PublicEntry, maySend: string[], mayReceive: string[]) => ({
      ed25519: e.ed25519,
      x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
      maySend,
      mayReceive,
    });
    const keyFile = path.join(dir, 'ops.key');
    await writePrivateKeyFile(keyFile, opsId.privateKey);
    const ringFile = path.join(dir, 'keyring.json');
    writeFileSync(
      ringFile,
      JSON.stringify({
        format: 'heh-keyring/1',
        peers: { [hubName]: entryOf(hubId.publicEntry, ['get_capabilities'], ['get_capabilities']) },
      }),
      { mode: 0o600 },
    );
    const hub = amqpBus({
      name: hubName,
      peers: [opsName],
      url: AMQP_URL,
      sealer: new Sealer({
        keyring: new Keyring(nodeBackend, {
          keyring: {
            format: 'heh-keyring/1',
            peers: { [opsName]: entryOf(opsId.publicEntry, ['get_capabilities'], ['get_capabilities']) },
          },
          privateKey: hubId.privateKey,
        }),
        backend: nodeBackend,
        sequence: await SequenceReserver.open(path.join(dir, 'hub.seq')),
        replay: await ReplayWindow.open(path.join(dir, 'hub.replay')),
      }),
    });
    const got: Message[] = [];
    hub.onGetCapabilities((m) => {
      got.push(m);
    });
    await hub.start();
    try {
      const state = path.join(dir, 'not', 'yet', 'there');
      const io = capture();
      const args = ['send', '--as', opsName, '--to', hubName, '--url', AMQP_URL, '--keyring', ringFile];
      args.push('--private-key', keyFile, '--state-dir', state, 'get_capabilities', 'device=null');
      assert.is(await main(args, io), 0, io.errors.join('\n'));
      await until(() => got.length === 1, 'the sealed get_capabilities');
      assert.is((got[0] as Message<'get_capabilities'>).device, null, 'null, not the string "null"');
      assert.is(statSync(state).mode & 0o777, 0o700);
      // A peer the keyring has no keys for would get clear text: refused before connecting, as the hub refuses it.
      const stray = capture();
      const strayArgs = [...args.slice(0, 4), `${hubName}-x`, ...args.slice(5)];
      assert.is(await main(strayArgs, stray), 2, stray.errors.join('\n'));
      assert.match(
        stray.errors.join('\n'),
        `--keyring ${ringFile} has no keys for ${hubName}-x: sealed to the others, it would get clear text; add its ` +
          'entry, or leave out --keyring to talk in clear',
      );
      assert.is(got.length, 1);
    } finally {
      await hub.close();
      rmSync(dir, { recursive: true, force: true });
      await cleanup([hubName, opsName], [[hubName, opsName]]);
    }
  }, 30_000),
);

s(
  "defaults: without --role the command is a controller (queues topology: it sends to the hub's -down queue); " +
    'without --timeout a request waits 10,000 ms',
  timed(
    () =>
      withBus(async (f) => {
        const ops = entity('ops');
        const hub = entity('heh');
        const h = f.create({ name: hub, peers: [ops], topology: 'queues', role: 'hub' });
        const got: (number | null)[] = [];
        h.onSetClock((m) => {
          got.push(m.offset);
        });
        // What the command declares as a controller of the queues topology: its own dead letters.
        f.queues.add(`private-${ops}-dead`);
        f.exchanges.add(`private-${ops}-dlx`);
        await f.start();
        const common = ['--as', ops, '--to', hub, '--url', AMQP_URL, '--topology', 'queues'];
        const sent = capture();
        assert.is(await main(['send', ...common, 'set_clock', 'offset=3'], sent), 0, sent.errors.join('\n'));
        // As a hub (the library's default role), the command would have sent to its own `<ops>-up` instead.
        await until(async () => got.length === 1, `the hub gets set_clock from ${hub}-down`, NET_MS);
        assert.equal(got, [3]);

        // Nobody answers once the hub is gone: the request ends at the default timeout, which its error names.
        await h.close();
        const asked = capture();
        const code = await main(
          [
            'request',
            ...common,
            'get_status_report',
            'from=2026-11-26T10:00:00Z',
            'to=2026-11-26T10:15:00Z',
            'severity_threshold=3',
          ],
          asked,
        );
        assert.is(code, 1, asked.errors.join('\n'));
        assert.match(asked.errors.join('\n'), new RegExp(`no reply to get_status_report from ${hub} within 10000 ms`));
      }),
    40_000,
  ),
);

s('validate: ok TYPE or error CODE PATH per line, exit 1 when any failed', async () => {
  const good = '{"msg":"response","msg_id":null,"response_code":200,"response_desc":"OK"}';
  const io = capture(`${good}\n\n{"msg":"activate"}\nnot json\n`);
  assert.is(await main(['validate', '-'], io), 1);
  assert.equal(io.lines, ['ok response', 'error 400 activate.id: required field missing', io.lines[2]]);
  assert.match(io.lines[2] as string, /^error 400 message: not valid JSON/);
  const ok = capture(`${good}\n`);
  assert.is(await main(['validate'], ok), 0);
  assert.is(await main(['validate', '/nonexistent/file'], capture()), 2);
});

s('dist/ebadge.js runs alone: no node_modules beside it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-bundle-'));
  try {
    const file = path.join(dir, 'ebadge.js');
    const { bytes: size } = await bundle('src/bin/ebadge.ts', file);
    assert.ok(size > 10_000);
    writeFileSync(
      path.join(dir, 'm.jsonl'),
      '{"msg":"get_all_prices"}\n{"msg":"get_report","from":"2015-06-01T10:00:00"}\n',
    );
    const r = spawnSync(process.execPath, [file, 'validate', 'm.jsonl'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.is(r.status, 1, r.stderr);
    assert.equal(r.stdout.trim().split('\n'), [
      'ok get_all_prices',
      'error 454 get_report.from: time zone missing in "2015-06-01T10:00:00"',
    ]);
    const help = spawnSync(process.execPath, [file, '--help'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    assert.is(help.status, 0);
    assert.match(help.stdout, /ebadge COMMAND/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

s(
  'listen says when its connection is lost and when it is back, and prints what comes after',
  timed(async () => {
    const [hub, ops] = [`heh-cli-lost-${run}`, `ops-cli-lost-${run}`];
    const h = amqpBus({ name: hub, peers: [ops], url: AMQP_URL });
    const f = new BusFixture();
    const proxy = await FaultProxy.start();
    try {
      await h.start();
      const io = capture();
      const url = `amqp://guest@127.0.0.1:${proxy.port}`;
      const listening = main(['listen', '--as', ops, '--peer', hub, '--url', url, '--count', '1'], io);
      await until(async () => (await consumers(f, `private-${ops}-in`)) > 0, 'listen consuming');
      proxy.cutAll();
      await until(() => io.errors.some((e) => e.startsWith('reconnected to')), 'the reconnection said', 20_000);
      assert.ok(
        io.errors.some((e) => e.startsWith('warning: connection lost')),
        io.errors.join('\n'),
      );
      await until(async () => (await consumers(f, `private-${ops}-in`)) > 0, 'listen consuming again');
      await h.publish(ops, { msg: 'set_smart_mode', mode: 'off', reset: false } as Message);
      assert.is(await listening, 0, io.errors.join('\n'));
      assert.match(io.lines[0] ?? '', '"mode":"off"');
    } finally {
      await h.close();
      await proxy.close();
      await f.dispose();
      await cleanup([hub, ops], [[hub, ops]]);
    }
  }, 40_000),
);

s.run();
