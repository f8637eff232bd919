/**
 * Delivery to clients: `authorizeForward` asks the ACL again at delivery (a narrower policy after
 * a re-welcome applies to existing subscriptions), and the gateway's replies go out on the
 * device's down topic at QoS 1 (protocol-v1 "MQTT transport"), bounded in time.
 */
import type { Aedes, AedesOptions } from 'aedes';
import { checkDeliver } from '../acl.js';
import type { MqttConnectionTable } from '../connection-table.js';
import { MqttError } from '../errors.js';
import { downTopic } from '../topics.js';

export function deliverHooks(table: MqttConnectionTable): Required<Pick<AedesOptions, 'authorizeForward'>> {
  return {
    authorizeForward(client, packet) {
      const conn = table.byClient(client);
      return conn !== undefined && checkDeliver(conn, packet.topic) ? packet : null;
    },
  };
}

/** Publishes `payload` on `dev`'s down topic at QoS 1; rejects after `timeoutMs`. */
export async function publishDown(broker: Aedes | undefined, dev: string, payload: Uint8Array, timeoutMs: number): Promise<void> {
  if (broker === undefined) throw new MqttError('GH_MQTT_NOT_RUNNING', 'broker stopped');
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        broker.publish({ cmd: 'publish', topic: downTopic(dev), payload: Buffer.from(payload), qos: 1, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MqttError('GH_MQTT_PUBLISH_TIMEOUT', `publish on down topic not done within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
