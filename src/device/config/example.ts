import { GUEST } from './broker.js';

/**
 * A small valid configuration: a household meter and a switchable boiler, both simulated, on a local broker.
 * There is no passwordFile: the user "guest" logs in with the password "guest", the local RabbitMQ's default
 * account (which RabbitMQ only accepts from localhost). Any other user needs broker.passwordFile (or
 * broker.external), and parseConfig refuses a configuration without it.
 */
export function exampleConfig(stateDir: string): unknown {
  return {
    name: 'heh-example',
    broker: { url: 'amqp://127.0.0.1:5672', username: GUEST },
    peers: [{ name: 'vpp-example', role: 'aggregator' }],
    stateDir,
    devices: [
      { name: 'meter', meter: { kind: 'simulated' } },
      {
        name: 'boiler',
        type: 'boiler',
        maxPowerKw: 2,
        meter: { kind: 'simulated', seed: 2, profile: 'boiler', peakKw: 2 },
        actuator: { kind: 'simulated' },
      },
    ],
  };
}
