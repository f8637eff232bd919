/**
 * Delivery to clients: `authorizeForward` asks the ACL again at delivery (a narrower policy after
 * a re-welcome applies to existing subscriptions), and the gateway's replies go out on the
 * device's down topic at QoS 1, bounded in time, to the one connection that owns the exchange
 * or session (protocol-v2 "Replies go to one connection", applied to v1 too): never to every
 * subscriber of the topic.
 */
import type { Aedes, AedesOptions } from 'aedes';
import { checkDeliver } from '../acl.js';
import type { MqttConnection } from '../connection.js';
import type { MqttConnectionTable } from '../connection-table.js';
import { MqttError } from '../errors.js';
import { downTopic, type TopicVersion } from '../topics.js';

export function deliverHooks(table: MqttConnectionTable): Required<Pick<AedesOptions, 'authorizeForward'>> {
  return {
    authorizeForward(client, packet) {
      const conn = table.byClient(client);
      return conn !== undefined && checkDeliver(conn, packet.topic) ? packet : null;
    },
  };
}

/**
 * Delivers `payload` on `dev`'s down topic of `version` at QoS 1 to `conn` alone, through its
 * aedes client (`Client#publish` keeps `authorizeForward` and the QoS handshake); rejects after
 * `timeoutMs`. Nothing goes through the broker's topic tree, so a subscription to someone
 * else's down topic receives nothing.
 */
export async function deliverDown(conn: MqttConnection, dev: string, version: TopicVersion, payload: Uint8Array, timeoutMs: number): Promise<void> {
  const client = conn.client;
  if (client === undefined) throw new MqttError('GH_MQTT_NOT_RUNNING', 'connection has no client');
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        client.publish({ cmd: 'publish', topic: downTopic(dev, version), payload: Buffer.from(payload), qos: 1, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MqttError('GH_MQTT_PUBLISH_TIMEOUT', `publish on down topic not done within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Publishes `payload` on `topic` on the broker (a v2 pub frame's content for local subscribers), bounded. */
export async function publishLocal(broker: Aedes | undefined, topic: string, payload: Uint8Array, timeoutMs: number): Promise<void> {
  if (broker === undefined) throw new MqttError('GH_MQTT_NOT_RUNNING', 'broker stopped');
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MqttError('GH_MQTT_PUBLISH_TIMEOUT', `local publish not done within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
