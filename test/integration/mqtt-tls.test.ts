/**
 * The MQTT hub over TLS with its client certificate (hub.json `broker.tls` and `broker.external` with an mqtts://
 * URL), against a throw-away Mosquitto (own port and folder, stopped at the end) whose listener requires a
 * certificate from the test CA and takes the client's name from it (`use_identity_as_username`), with an ACL that
 * lets each name write only as itself (`pattern write +/%u/#`) and read only its own messages: a name that is not
 * the certificate's can reach nobody. The aggregator connects the same way. The broker's certificate is verified:
 * against another CA the hub does not connect, and says why.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Message } from '../../src/codec/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { type BrokerTlsMaterial, makeTlsMaterial, signLeaf } from '../helpers/broker-node.js';
import { until, withDeadline } from '../helpers/deadline.js';
import { HUB_MQTT_JS, HubProcess, hubConfig } from '../helpers/hub-process.js';
import { Mosquitto } from '../helpers/mosquitto.js';

const MS = 15_000;
const id = randomUUID().slice(0, 8);
const HUB = `heh-tls${id}`;
const VPP = `vpp-tls${id}`;

const s = suite('mqtt tls');
let work = '';
let pki: BrokerTlsMaterial & { serverCertFile: string; serverKeyFile: string };
let broker: Mosquitto | undefined;
let url = '';
const leaf = (cn: string) => ({ cert: path.join(work, 'pki', `${cn}.pem`), key: path.join(work, 'pki', `${cn}.key`) });

s.before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'mqtt-tls-'));
  pki = await makeTlsMaterial(path.join(work, 'pki'));
  await Promise.all([HUB, VPP].map((cn) => signLeaf(path.join(work, 'pki'), cn, cn, 'ca', 'client')));
  const read = (f: string): string => readFileSync(f, 'utf8');
  broker = await Mosquitto.start({
    files: {
      'ca.pem': read(pki.caFile),
      'server.pem': read(pki.serverCertFile),
      'server.key': read(pki.serverKeyFile),
      acl: ['pattern write +/%u/#', 'pattern read +/+/%u/#', 'pattern write dead-letter/%u', ''].join('\n'),
    },
    config: (dir) => [
      `cafile ${dir}/ca.pem`,
      `certfile ${dir}/server.pem`,
      `keyfile ${dir}/server.key`,
      'require_certificate true',
      'use_identity_as_username true',
      `acl_file ${dir}/acl`,
      'allow_anonymous false',
    ],
  });
  url = `mqtts://127.0.0.1:${broker.port}`;
});

s.after(async () => {
  await broker?.close();
  rmSync(work, { recursive: true, force: true });
});

function startHub(ca: string): HubProcess {
  const dir = mkdtempSync(path.join(work, 'hub-'));
  const { cert, key } = leaf(HUB);
  const config = {
    ...hubConfig(dir, HUB, VPP),
    broker: { url, external: true, tls: { ca, cert, key }, reconnectDelayS: 2 },
  };
  const file = path.join(dir, 'hub.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return new HubProcess(['--config', file], HUB_MQTT_JS);
}

s(
  'hub-mqtt.js with broker.tls and broker.external answers an aggregator that logs in with its own certificate',
  async () => {
    const p = startHub(pki.caFile);
    const { cert, key } = leaf(VPP);
    const vpp = mqttBus({
      name: VPP,
      peers: [HUB],
      url,
      tls: { ca: readFileSync(pki.caFile), cert: readFileSync(cert), key: readFileSync(key) },
    });
    try {
      await p.waitFor('hub running', MS);
      await withDeadline(vpp.start(), MS, 'vpp start');
      const caps = (await withDeadline(
        vpp.request(HUB, { msg: 'get_capabilities', device: null }, { timeout: MS }),
        MS,
        'get_capabilities',
      )) as Message;
      assert.is(caps.msg, 'capabilities');
      assert.is(await p.stop(), 0, p.transcript());
    } finally {
      await p.kill();
      await vpp.close();
    }
  },
);

s('a name that is not the certificate it came with reaches nobody: the ACL is on the certificate name', async () => {
  const tls = (cn: string) => ({
    ca: readFileSync(pki.caFile),
    cert: readFileSync(leaf(cn).cert),
    key: readFileSync(leaf(cn).key),
  });
  // VPP's certificate, claiming to be another aggregator of the hub: the broker names it VPP whatever it says.
  const impostor = mqttBus({ name: `vpp-other${id}`, peers: [HUB], url, tls: tls(VPP) });
  const vpp = mqttBus({ name: VPP, peers: [HUB], url, tls: tls(VPP) });
  const hub = mqttBus({ name: HUB, peers: [VPP, `vpp-other${id}`], url, tls: tls(HUB) });
  const got: string[] = [];
  hub.onSetClock((_m, ctx) => {
    got.push(ctx.sender);
  });
  const setClock = () => ({ msg: 'set_clock', offset: 1, msg_id: randomUUID() }) as Message<'set_clock'>;
  try {
    await withDeadline(hub.start(), MS, 'hub start');
    await withDeadline(impostor.start(), MS, 'impostor start');
    // Refused in the PUBACK under MQTT 5 (0x87, not authorized); under 3.1.1 Mosquitto acks and drops it.
    const refused = await impostor.publish(HUB, setClock()).then(
      () => 'acked',
      (e: unknown) => String(e),
    );
    // The same certificate under its own name is delivered: what stopped the other was the name, nothing else.
    await withDeadline(vpp.start(), MS, 'vpp start');
    await vpp.publish(HUB, setClock());
    await until(() => got.length > 0, "the set_clock sent under the certificate's own name", MS);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got, [VPP], `only the certificate's own name gets through (the other: ${refused})`);
  } finally {
    await Promise.allSettled([impostor.close(), vpp.close()]);
    await hub.close();
  }
});

s("the broker's certificate is verified: against another CA the hub does not connect, and says so", async () => {
  const p = startHub(path.join(work, 'pki', 'untrusted-ca.pem'));
  try {
    await until(
      () => p.out.some((l) => /certificate|self.signed|unable to verify/i.test(l)),
      () => `a certificate error in the log:\n${p.transcript()}`,
      MS,
    );
    assert.not.ok(p.has('hub running'), 'never running');
    await p.stop();
  } finally {
    await p.kill();
  }
});

s.run();
