/**
 * The limit: the same embedded broker (MqttTransport: aedes with the gateway's options, the
 * frame guard, the ACL hooks, TCP_NODELAY) with an authentication pipeline that does no work:
 * every up message is answered at once with a fixed down message. Round trips/s through this
 * are what MQTT alone allows; a full authentication is two round trips.
 */
import { encodeChallenge } from '../protocol/index.js';
import type { AuthPipeline, HelloOutcome } from '../daemon/pipeline/types.js';
import { MqttTransport } from '../daemon/transports/mqtt/transport.js';
import { MQTT_DEFAULTS } from '../testkit/component-defaults.js';

const maxConnections = Number(process.argv[2] ?? '20000');
const reply = encodeChallenge({ type: 'challenge', version: 1, dev: 'echo', gn: new Uint8Array(16), gw: 'gw-bench' });

/** Answers without any check, crypto or backend call. */
const nullPipeline: AuthPipeline = {
  challenge: () => Promise.resolve(reply),
  connectionChallenge: () => Promise.resolve(reply),
  hello: (): Promise<HelloOutcome> => Promise.resolve({ reply }),
  connectionClosed: () => undefined,
  reject: () => Promise.resolve(reply),
};

const mqtt = new MqttTransport({ pipeline: nullPipeline, ...MQTT_DEFAULTS, tcp: { host: '127.0.0.1', port: 0 }, maxConnections, maxUnwelcomed: maxConnections, maxConnectionsPerSource: maxConnections, acceptsPerSourcePerSec: 100_000, maxQueuedPerConnection: 64 });
await mqtt.start();
process.send?.({ op: 'ready', port: mqtt.addresses().tcp?.port ?? 0 });
process.on('message', (cmd: { op: string }) => {
  if (cmd.op === 'stop') void mqtt.stop().finally(() => process.exit(0));
});
process.on('disconnect', () => void mqtt.stop().finally(() => process.exit(0)));
