/**
 * The aedes hooks of SUBSCRIBE and UNSUBSCRIBE: the ACL decides each filter (a refused filter
 * gets SUBACK 0x80, the connection stays), bounded per connection.
 */
import type { AedesOptions, Client } from 'aedes';
import type { Logger } from 'winston';
import { checkSubscribe } from '../acl.js';
import type { MqttConnectionTable } from '../connection-table.js';
import { shortForLog } from '../topics.js';

export interface SubscribeHookOptions {
  table: MqttConnectionTable;
  log: Logger;
  /** Distinct subscriptions one connection may hold; beyond it SUBACK 0x80. */
  maxSubscriptionsPerConnection: number;
  /** A filter was granted (a listener's fault must not reach aedes: the caller guards it). */
  onSubscribed(connection: string, filter: string, qos: number): void;
}

export interface SubscribeHooks extends Required<Pick<AedesOptions, 'authorizeSubscribe'>> {
  /** For the broker's `unsubscribe` event. */
  unsubscribed(filters: string[], client: Client): void;
}

export function subscribeHooks(o: SubscribeHookOptions): SubscribeHooks {
  return {
    authorizeSubscribe(client, sub, cb) {
      const conn = o.table.byClient(client);
      const d = conn === undefined ? { ok: false as const, why: 'unknown connection' } : checkSubscribe(conn, sub.topic, sub.qos);
      if (!d.ok || conn === undefined) {
        // cb(err) would drop the connection; cb(null, null) refuses only this filter (SUBACK 0x80).
        o.log.warn('subscribe refused', { conn: conn?.id, topic: shortForLog(sub.topic), why: d.ok ? 'unknown' : d.why });
        cb(null, null);
        return;
      }
      // Each subscription costs broker memory (client table and matcher): bounded per connection.
      if (!conn.hasSubscription(sub.topic) && conn.subscriptionCount >= o.maxSubscriptionsPerConnection) {
        o.log.warn('subscribe refused', { conn: conn.id, topic: shortForLog(sub.topic), why: 'too many subscriptions' });
        cb(null, null);
        return;
      }
      conn.subscribed(sub.topic);
      o.table.bind(conn, d.bind);
      const qos = d.qos ?? 1;
      cb(null, { ...sub, qos });
      o.onSubscribed(conn.id, sub.topic, qos);
    },

    unsubscribed(filters, client) {
      const conn = o.table.byClient(client);
      for (const f of filters) conn?.unsubscribed(f);
    },
  };
}
