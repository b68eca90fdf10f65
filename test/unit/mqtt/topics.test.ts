/**
 * The MQTT topic scheme (src/mqtt/topics.ts) without a broker: party names that cannot be one topic level and one
 * AMQP routing-key word are refused at configuration time, with a sentence that names the name and the reason;
 * topics carry the message type, the sender and the recipient, and map onto RabbitMQ's amq.topic routing keys
 * (`/` becomes `.`) as D3.2.3 wants them; the URL's scheme picks the transport.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpTransport, BusError } from '../../../src/bus/index.js';
import {
  busFor,
  checkPartyName,
  deadLetterTopic,
  inboxFilter,
  MqttTransport,
  parseTopic,
  topicOf,
} from '../../../src/mqtt/index.js';

function refusal(fn: () => unknown): BusError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, BusError);
    return err as BusError;
  }
  throw new Error('expected a BusError');
}

const s = suite('mqtt topics');

s('names that cannot be a topic level are refused with a sentence naming them and why', () => {
  const cases: [string, RegExp][] = [
    ['vpp.acme', /RabbitMQ's MQTT plugin turns "\." into "\/"/],
    ['vpp/acme', /"\/" is MQTT's level separator or a wildcard/],
    ['vpp+acme', /"\+" is MQTT's level separator or a wildcard/],
    ['vpp#', /"#" is MQTT's level separator or a wildcard/],
    ['', /it is empty/],
    ['-vpp', /must begin with a letter or a digit/],
    ['x'.repeat(65), /it has 65 characters, more than 64/],
    ['vpp acme', /" " is not a letter, a digit, "_" or "-"/],
    ['vppé', /"é" is not a letter/],
  ];
  for (const [name, why] of cases) {
    const e = refusal(() => checkPartyName(name, 'peer'));
    assert.is(e.code, 'CONFIG');
    assert.ok(e.message.startsWith(`the peer name "${name}" cannot be an MQTT topic level: `), e.message);
    assert.match(e.message, why);
  }
  for (const ok of ['heh-b827ebea02c1', 'vpp_acme', 'DSO1', 'x'.repeat(64)]) checkPartyName(ok, 'peer');
});

s('the transport refuses a bad entity or peer name when it is built, before any connection', () => {
  const e = refusal(() => new MqttTransport({ name: 'heh-1', peers: ['vpp-1', 'dso.north'] }));
  assert.match(e.message, /the peer name "dso\.north" cannot be an MQTT topic level/);
  const me = refusal(() => new MqttTransport({ name: 'heh/1', peers: ['vpp-1'] }));
  assert.match(me.message, /the entity name "heh\/1"/);
  const url = refusal(() => new MqttTransport({ name: 'heh-1', peers: ['vpp-1'], url: 'amqp://127.0.0.1' }));
  assert.match(url.message, /takes mqtt: or mqtts: URLs, not amqp:/);
});

s('a topic is <msg>/<from>/<to>[/<heh_id>] and parses back to the same routing key', () => {
  assert.is(topicOf('vpp-1', 'heh-1', 'get_report'), 'get_report/vpp-1/heh-1');
  assert.is(topicOf('heh-1', 'vpp-1', 'report.heh-1'), 'report/heh-1/vpp-1/heh-1');
  assert.equal(parseTopic('report/heh-1/vpp-1/heh-1'), {
    type: 'report',
    from: 'heh-1',
    to: 'vpp-1',
    routingKey: 'report.heh-1',
  });
  assert.equal(parseTopic('get_report/vpp-1/heh-1'), {
    type: 'get_report',
    from: 'vpp-1',
    to: 'heh-1',
    routingKey: 'get_report',
  });
  assert.is(parseTopic('dead-letter/heh-1'), undefined, 'two levels are not a message');
  for (const bad of ['', 'a..b', 'report.heh/1', 'report.+', 'get#', 'a.\0', 'report.heh\n1', 'a.\u0085'])
    assert.match(refusal(() => topicOf('a', 'b', bad)).message, /cannot be an MQTT topic/);
});

s('on amq.topic (/ becomes .) the key names the type first, then the sender and the recipient', () => {
  const key = topicOf('heh-1', 'vpp-1', 'report.heh-1').replaceAll('/', '.');
  assert.is(key, 'report.heh-1.vpp-1.heh-1');
  const [type, from, to] = key.split('.');
  assert.equal([type, from, to], ['report', 'heh-1', 'vpp-1']);
});

s('the inbox filter takes what is sent to us, never the dead letters or what we send', () => {
  const matches = (filter: string, topic: string): boolean => {
    const f = filter.split('/');
    const t = topic.split('/');
    for (let i = 0; i < f.length; i++) {
      if (f[i] === '#') return true;
      if (i >= t.length) return false;
      if (f[i] !== '+' && f[i] !== t[i]) return false;
    }
    return f.length === t.length;
  };
  const inbox = inboxFilter('heh-1');
  assert.ok(matches(inbox, topicOf('vpp-1', 'heh-1', 'get_report')));
  assert.ok(matches(inbox, topicOf('vpp-1', 'heh-1', 'activate.heh-1')));
  assert.not.ok(matches(inbox, topicOf('heh-1', 'vpp-1', 'report.heh-1')));
  assert.not.ok(matches(inbox, deadLetterTopic('heh-1')));
  assert.not.ok(matches(inboxFilter('vpp-1'), deadLetterTopic('heh-1')));
});

s('busFor picks the transport from the scheme, and refuses another scheme', async () => {
  const m = busFor({ name: 'heh-1', peers: ['vpp-1'], url: 'mqtt://127.0.0.1:1883' });
  assert.instance(m.transport, MqttTransport);
  const ms = busFor({ name: 'heh-1', peers: ['vpp-1'], url: 'mqtts://127.0.0.1:8883' });
  assert.instance(ms.transport, MqttTransport);
  const a = busFor({ name: 'heh-1', peers: ['vpp-1'], url: 'amqp://127.0.0.1:5672' });
  assert.instance(a.transport, AmqpTransport);
  const e = refusal(() => busFor({ name: 'heh-1', peers: ['vpp-1'], url: 'http://127.0.0.1' }));
  assert.match(e.message, /must begin with mqtt:, mqtts:, amqp: or amqps: \(got "http:"\)/);
  await Promise.all([m.close(), ms.close(), a.close()]);
});

s.run();
