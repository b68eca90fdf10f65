/**
 * What the hub's log says of the transport's recovery events (issue 15, item 1: `channel-recovered` went unlogged,
 * so a channel closed and reopened in a loop left no trace), on the in-memory transport as main.ts wires the link.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { unreachable } from '../../../src/device/link.js';
import { hubRig } from '../../helpers/memory-hub.js';

const s = suite('hub log: recovery events');

s('a reopened channel, a cancelled consumer and a missing inbox protection are each one warning', async () => {
  const r = await hubRig();
  try {
    const t = r.bus.transport;
    const before = r.logs.length;
    const closed = new Error('channel 2 closed: 406 PRECONDITION_FAILED');
    t.simulate('resumed', closed);
    const deleted = new Error('queue deleted');
    t.simulate('source-cancelled', 'private-heh-example-in', deleted);
    t.simulate('degraded', 'private-heh-example-in exists without x-delivery-limit', 'rabbitmqctl set_policy ...');
    const lines = r.logs.slice(before).map((l) => [l.level, l.msg, l.fields]);
    assert.ok((lines[0]?.[2] as { error?: unknown } | undefined)?.error === closed);
    assert.equal(lines, [
      ['warn', 'a channel the broker closed was reopened', { error: closed }],
      [
        'warn',
        'the broker cancelled our consumer; consuming again',
        { queue: 'private-heh-example-in', error: deleted },
      ],
      ['warn', 'private-heh-example-in exists without x-delivery-limit', { fix: 'rabbitmqctl set_policy ...' }],
    ]);
  } finally {
    await r.close();
  }
});

s(
  "a 530 for a connection limit names the limit to raise, not the vhost to create (the broker's own texts)",
  async () => {
    const r = await hubRig();
    try {
      const t = r.bus.transport;
      const vhost = '/'; // the example config's broker.url names none
      // RabbitMQ 3.10's reasons for 530 NOT_ALLOWED as connection.open is answered, as the AMQP client reports them.
      const refused = (reason: string): Error =>
        Object.assign(
          new Error(`the broker closed the connection: 530 NOT_ALLOWED - ${reason} (in reply to connection.open)`),
          {
            code: 'NOT_ALLOWED',
          },
        );
      const before = r.logs.length;
      for (const reason of [
        `access to vhost '${vhost}' refused for user 'heh-example': connection limit (0) is reached`,
        "connection refused for user 'heh-example': user connection limit (0) is reached",
        `access to vhost '${vhost}' refused for user 'heh-example'`,
        'vhost ebadge-none not found',
      ])
        t.simulate('failed', refused(reason), { attempt: 1, endpoint: 'memory', authentication: false });
      const lines = r.logs.slice(before).map((l) => [l.level, l.msg, l.fields['vhost'], l.fields['fix']]);
      assert.equal(lines, [
        [
          'error',
          "the broker's connection limit for the virtual host is reached; retrying",
          vhost,
          `close connections or raise the limit (rabbitmqctl set_vhost_limits -p ${vhost} '{"max-connections": N}', or rabbitmqctl clear_vhost_limits -p ${vhost})`,
        ],
        [
          'error',
          "the broker's connection limit for the user is reached; retrying",
          vhost,
          `close connections or raise the limit (rabbitmqctl set_user_limits heh-example '{"max-connections": N}', or rabbitmqctl clear_user_limits heh-example max-connections)`,
        ],
        ...[1, 2].map(() => [
          'error',
          'the broker refused our virtual host; retrying',
          vhost,
          `name the vhost in broker.url (amqps://broker/ebadge for a provisioned broker: a URL without one means "/"), or give heh-example access to "/" (rabbitmqctl set_permissions -p / heh-example ...)`,
        ]),
      ]);
    } finally {
      await r.close();
    }
  },
);

s('a broker that cannot be reached: the log says what to check, from the error the AMQP client gave', async () => {
  // The AMQP client's texts, captured from connect() on this machine (Node 20): a closed port, Mosquitto's 1883, a
  // name that does not resolve, amqps:// to RabbitMQ's plain port.
  const cases: [string, string, RegExp | undefined][] = [
    [
      'socket error: connect ECONNREFUSED 127.0.0.1:1',
      'amqp://127.0.0.1:1',
      /^nothing listens at .*: start the broker/,
    ],
    ['socket error: read ECONNRESET', 'amqp://127.0.0.1:1883', /is it an AMQP port .* hub-mqtt\.js is the MQTT hub$/],
    ['socket error: getaddrinfo ENOTFOUND no-such-host.invalid', 'amqp://no-such-host.invalid', /does not resolve/],
    [
      'TLS error: 802C08634D7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:',
      'amqps://127.0.0.1:5672',
      /does not speak TLS: use amqp:\/\//,
    ],
    ['socket error: connect ETIMEDOUT 10.0.0.9:5672', 'amqp://10.0.0.9', /the network, a firewall/],
    // Node's texts for a certificate outside its dates; the untrusted CA, the wrong name and the refused client
    // certificate are also checked with the texts of a real TLS broker (test/integration/amqp-tls.test.ts).
    ['TLS error: certificate has expired', 'amqps://broker', /check the clock .* NTP synced/],
    ['TLS error: certificate is not yet valid', 'amqps://broker', /check the clock/],
    ['TLS error: self-signed certificate in certificate chain', 'amqps://broker', /set broker\.tls\.ca/],
    ['TLS error: unable to get local issuer certificate', 'amqps://broker', /set broker\.tls\.ca/],
    ['TLS error: unable to verify the first certificate', 'amqps://broker', /set broker\.tls\.ca/],
    [
      "TLS error: Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: ",
      'amqps://127.0.0.1',
      // Not only the URL's host: a broker.tls.servername set, and wrong, was blamed on broker.url.
      /^the name checked \(broker\.tls\.servername, else the host in broker\.url\) is not in/,
    ],
    [
      'TLS error: C0F7B3B8:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 48',
      'amqps://broker',
      /refused the hub's client certificate/,
    ],
    ['the broker closed the connection: 320 CONNECTION_FORCED', 'amqp://127.0.0.1', undefined],
  ];
  for (const [text, url, fix] of cases) {
    const got = unreachable(text, 'E', url);
    if (fix === undefined) assert.is(got, undefined, text);
    else assert.match(got ?? '', fix, text);
  }
  const r = await hubRig();
  try {
    const before = r.logs.length;
    const refused = new Error('socket error: connect ECONNREFUSED 127.0.0.1:1');
    r.bus.transport.simulate('failed', refused, { attempt: 2, endpoint: '127.0.0.1:1', authentication: false });
    const [line] = r.logs.slice(before);
    assert.equal([line?.level, line?.msg, line?.fields['attempt']], ['warn', 'cannot reach the broker', 2]);
    assert.match(String(line?.fields['fix']), 'nothing listens at 127.0.0.1:1');
  } finally {
    await r.close();
  }
});

s.run();
