/**
 * Two process-level adjustments of aedes and its encoder that keep a long-lived broker's memory
 * flat; each says why below.
 */
import { createRequire } from 'node:module';
import type { Aedes, Client } from 'aedes';

/** The part of aedes' persistence (aedes-persistence 'memory') that forgetCleanOutgoing replaces. */
interface OutgoingClear {
  outgoingClearMessageId(client: Client, packet: { messageId?: number }): Promise<unknown>;
}

/**
 * aedes-persistence's memory store answers every PUBACK by looking up the client's outgoing
 * queue and *creates* an empty one when there is none (`getMapRef(…, CREATE_ON_EMPTY)`); nothing
 * deletes it for a clean session. Our broker-side client ids are unique per connection
 * (`mqtt:<n>`), so each connection that ever acknowledged a QoS 1 message left a map entry
 * behind for the life of the process. Every session here is clean, and aedes never queues
 * outgoing messages of a clean session in the store (deliverQoS writes them at once), so there is
 * nothing to clear for it; persistent sessions (none today) keep the store's behaviour.
 */
export function forgetCleanOutgoing(broker: Aedes): void {
  const persistence = (broker as unknown as { persistence: OutgoingClear }).persistence;
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingClearMessageId = (client, packet) => (client.clean ? Promise.resolve(undefined) : clear(client, packet));
}

/**
 * mqtt-packet (aedes' encoder, loaded as aedes loads it: a dependency of aedes, not ours) writes
 * every 16-bit number (packet ids, topic lengths) from a table of 65,536 two-byte Buffers that it
 * builds at its first packet: 6.6 MB of heap, ~14 MB of RSS, for the life of the process.
 * Without it each number is a two-byte Buffer from the pool when written. The switch is
 * process-wide (anything else using this mqtt-packet, mqtt.js included, writes the same bytes).
 */
export function dropNumberCache(): void {
  const mqttPacket = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } };
  mqttPacket.writeToStream.cacheNumbers = false;
}
