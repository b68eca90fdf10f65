/**
 * Connector.publish hands the transport a body writer (the message is encoded where the transport writes it) and
 * publishEncoded hands it the bytes: on the in-memory transport, which materialises the writer once, the bytes sent
 * are encode()'s, sealed or not; an invalid message rejects with its EncodeError and nothing is sent; a message
 * published while the transport is disconnected is encoded when it goes.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED } from '../../../src/bus/index.js';
import { EbTime, EncodeError, encode, type Message } from '../../../src/codec/index.js';
import { HUB, pair, sealers, VPP } from '../../helpers/memory-bus.js';

const report = (v: number): Message<'report'> => ({
  msg: 'report',
  from: EbTime.fromEpochMs(Date.UTC(2026, 0, 1)),
  to: EbTime.fromEpochMs(Date.UTC(2026, 0, 1, 0, 30)),
  resolution: 900,
  values: { 'meter.p': [v, v + 1] },
});

const t = suite('publish: encoded where the transport writes it');

t("clear: the bytes sent are encode()'s; publishEncoded sends its bytes as they are", async () => {
  const { hub } = pair();
  await hub.publish(VPP, report(1), { messageId: 'm-1' });
  const bytes = encode(report(2));
  await hub.publishEncoded(VPP, 'report', bytes, { routingKey: 'report', messageId: 'm-2' });
  assert.equal(
    hub.transport.sent.map((s) => s.body),
    [encode(report(1)), bytes],
  );
  assert.is(hub.transport.sent[1]?.body.buffer, bytes.buffer, 'bytes handed over are not copied by the bus');
});

t('an invalid message rejects with its EncodeError; nothing is sent', async () => {
  const { hub } = pair();
  const bad = { ...report(1), resolution: Number.POSITIVE_INFINITY } as Message;
  const err = await hub.publish(VPP, bad).catch((e: unknown) => e);
  assert.ok(err instanceof EncodeError && err.kind === 'invalid', String(err));
  assert.equal(hub.transport.sent, []);
});

t('sealed: the envelope opens to encode()', async () => {
  const now = () => Date.UTC(2026, 0, 1, 1);
  const s = sealers(HUB, VPP, ['report'], [], now);
  const { hub } = pair({ hub: { sealer: s.a } });
  await hub.publish(VPP, report(3));
  const sent = hub.transport.sent[0];
  assert.is(sent?.properties.contentType, CONTENT_TYPE_SEALED);
  assert.equal(Buffer.from(s.b.open(sent?.body as Buffer).payload), encode(report(3)));
});

t('published while disconnected: encoded when it goes', async () => {
  const { hub } = pair();
  hub.transport.disconnect();
  const m = report(4) as Message<'report'> & { values: Record<string, number[]> };
  const sending = hub.publish(VPP, m);
  // The bus's contract: the message must not change until the publish settles; this shows when it is read.
  m.values['meter.p'] = [40, 41];
  hub.transport.reconnect();
  await sending;
  assert.equal(hub.transport.sent[0]?.body, encode({ ...report(4), values: { 'meter.p': [40, 41] } }));
});

t.run();
