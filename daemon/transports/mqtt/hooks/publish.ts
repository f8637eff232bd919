/**
 * The aedes hooks of PUBLISH from a client: `authorizePublish` applies the ACL (and binds the
 * connection to its device on its first auth topic); `published` hands what arrived on the
 * connection's own up topic to the ingress, and every other message a client published to the
 * msg relay (protocol-v2 "msg").
 */
import type { AedesOptions, Client } from 'aedes';
import type { Logger } from 'winston';
import { checkPublish, type AclOptions } from '../acl.js';
import type { MqttConnectionTable } from '../connection-table.js';
import type { MqttIngress } from '../ingress.js';
import { inAuthNamespace, parseAuthTopic, shortForLog } from '../topics.js';

export interface PublishHookOptions {
  table: MqttConnectionTable;
  log: Logger;
  acl: AclOptions;
  ingress: MqttIngress;
  /** Unwelcomed connections bound to one device at once; a further one binding to it is refused. */
  maxUnwelcomedPerDevice: number;
  /** A message a client published outside the auth namespace (the ACL allowed it). */
  brokerMessage?: (topic: string, payload: Uint8Array) => void;
}

export function publishHooks(o: PublishHookOptions): Required<Pick<AedesOptions, 'authorizePublish' | 'published'>> {
  return {
    authorizePublish(client, packet, cb) {
      const conn = o.table.byClient(client);
      if (conn === undefined) {
        cb(new Error('publish refused'));
        return;
      }
      const d = checkPublish(conn, packet.topic, packet.qos, packet.retain, o.acl);
      if (!d.ok) {
        // MQTT 3.1.1 has no negative PUBACK: the connection is closed (aedes does it on error).
        o.log.warn('publish refused', { conn: conn.id, dev: conn.boundDev, topic: shortForLog(packet.topic), why: d.why });
        cb(new Error(`publish refused: ${d.why}`));
        return;
      }
      if (d.bind !== undefined && o.table.unwelcomedBoundTo(d.bind) >= o.maxUnwelcomedPerDevice) {
        // Bounded per device: a flood of connections naming D cannot crowd out D's own login.
        o.log.warn('publish refused', { conn: conn.id, dev: d.bind, why: 'too many unwelcomed connections for this device' });
        cb(new Error('publish refused: too many unwelcomed connections for this device'));
        return;
      }
      o.table.bind(conn, d.bind);
      cb(null);
    },

    // aedes types `client` as Client; it is null for the broker's own publishes: $SYS, and the
    // local copies of v2 pubs, which the session table hands to the msg relay with their origin.
    published(packet, client: Client | null, cb) {
      cb(null);
      const conn = o.table.byClient(client);
      if (conn === undefined) return;
      const auth = parseAuthTopic(packet.topic);
      if (auth === undefined) {
        if (o.brokerMessage !== undefined && !inAuthNamespace(packet.topic) && !packet.topic.startsWith('$')) {
          o.brokerMessage(packet.topic, new Uint8Array(packet.payload as Buffer));
        }
        return;
      }
      if (auth.direction !== 'up' || conn.boundDev !== auth.dev) return;
      o.ingress.enqueue(conn, auth.dev, new Uint8Array(packet.payload as Buffer), auth.version);
    },
  };
}
