/**
 * parseUrl (src/amqp/options.ts): RabbitMQ's URI spec (https://www.rabbitmq.com/docs/uri-spec) and its query
 * parameters (https://www.rabbitmq.com/docs/uri-query-parameters), and what a careless or hostile URL gets: an
 * AmqpError OPTION_INVALID that names the part, never a bare URIError, and never the password quoted.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpError, parseUrl } from '../../../src/amqp/index.js';

const s = suite('parseUrl');

function refusal(url: string): AmqpError {
  try {
    parseUrl(url);
  } catch (err) {
    if (err instanceof AmqpError) return err;
    throw new Error(`${url}: not an AmqpError: ${String(err)}`);
  }
  throw new Error(`${url}: accepted`);
}

s('host, port, user, password and vhost, percent-decoded; the defaults', () => {
  assert.equal(parseUrl('amqp://127.0.0.1'), { hostname: '127.0.0.1', port: 5672 });
  assert.equal(parseUrl('amqps://127.0.0.1/'), { hostname: '127.0.0.1', port: 5671, tls: {} });
  assert.equal(parseUrl('amqp://[::1]:5673'), { hostname: '::1', port: 5673 });
  assert.equal(parseUrl('amqp://us%40er:p%3Aw%2F@127.0.0.1/%2f'), {
    hostname: '127.0.0.1',
    port: 5672,
    username: 'us@er',
    password: 'p:w/',
    vhost: '/',
  });
  assert.equal(parseUrl('amqp://127.0.0.1/v%C3%A9'), { hostname: '127.0.0.1', port: 5672, vhost: 'vé' });
  assert.equal(parseUrl('amqp://127.0.0.1?heartbeat=30&frame_max=131072&channel_max=8&auth_mechanism=external'), {
    hostname: '127.0.0.1',
    port: 5672,
    heartbeat: 30,
    frameMax: 131072,
    channelMax: 8,
    mechanism: 'EXTERNAL',
  });
});

s('malformed percent-encoding, port 0, a bad scheme or parameter: OPTION_INVALID naming the part', () => {
  const cases: [string, string][] = [
    ['amqp://127.0.0.1/%zz', 'url: the vhost is not valid percent-encoding'],
    ['amqp://127.0.0.1/%C3', 'url: the vhost is not valid percent-encoding'],
    ['amqp://u%zz@127.0.0.1/', 'url: the user name is not valid percent-encoding'],
    ['amqp://127.0.0.1:0/', 'url: port 0: expected a port from 1 to 65535'],
    ['http://127.0.0.1/', 'url: scheme must be amqp: or amqps:, got http:'],
    ['amqp://127.0.0.1:99999/', 'url: not a URL'],
    ['amqp://127.0.0.1/?colour=blue', 'url: unknown query parameter "colour"'],
    ['amqp://127.0.0.1/?heartbeat=abc', 'heartbeat: expected an integer in [0, 65535], got "abc"'],
    ['amqp://127.0.0.1/?frame_max=1', 'frame_max: expected an integer in [8192, 67108864], got "1"'],
    ['amqp://127.0.0.1/?verify=maybe', 'verify: expected verify_peer or verify_none'],
    ['amqp://127.0.0.1/?verify=verify_none', 'url: TLS parameters need an amqps: URL'],
  ];
  for (const [url, message] of cases) {
    const err = refusal(url);
    assert.is(err.code, 'OPTION_INVALID', url);
    assert.match(err.message, message, url);
  }
});

s('a password is never quoted: not in a malformed URL, not when its own encoding is bad', () => {
  for (const url of ['amqp://u:hunter2%zz@127.0.0.1/', 'amqp://u:hunter2@127.0.0.1:99999/', 'amqp://u:hunter2@/%zz']) {
    const err = refusal(url);
    assert.not.ok(`${err.message} ${err.stack}`.includes('hunter2'), err.message);
  }
  assert.match(refusal('amqp://u:hunter2%zz@127.0.0.1/').message, 'the password is not valid percent-encoding');
});

s.run();
