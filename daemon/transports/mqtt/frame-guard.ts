/**
 * A pass-through Duplex between an accepted socket and aedes that reads only MQTT fixed headers
 * (MQTT 3.1.1 §2.2) as bytes arrive. mqtt-packet buffers a whole packet before parsing it, so a
 * peer announcing a 256 MB remaining length would make the broker buffer that much; the guard
 * cuts the connection as soon as the header announces more than `maxPacketBytes`, and when the
 * first packet is not a CONNECT ([MQTT-3.1.0-1]). Memory per connection stays bounded.
 */
import { Duplex } from 'node:stream';

export type FrameViolation = 'first-packet-not-connect' | 'packet-too-large' | 'bad-remaining-length' | 'bad-fixed-header';

export interface FrameGuardOptions {
  maxPacketBytes: number;
  onViolation: (violation: FrameViolation, detail: string) => void;
}

const CONNECT_FIXED_HEADER = 0x10;

/**
 * MQTT 3.1.1 §2.2 and §3: the fixed-header byte of every packet a client may send, with the
 * remaining length it must have (undefined: any). PUBLISH (0x3_) is checked apart: any flags but
 * QoS 3. Anything else (server-only packets, reserved types 0 and 15, wrong flags) is a protocol
 * violation that closes the connection [MQTT-2.2.2-2], [MQTT-4.8.0-1].
 */
const CLIENT_PACKETS: ReadonlyMap<number, number | undefined> = new Map([
  [0x10, undefined], // CONNECT
  [0x40, 2], // PUBACK
  [0x50, 2], // PUBREC
  [0x62, 2], // PUBREL
  [0x70, 2], // PUBCOMP
  [0x82, undefined], // SUBSCRIBE
  [0xa2, undefined], // UNSUBSCRIBE
  [0xc0, 0], // PINGREQ
  [0xe0, 0], // DISCONNECT
]);

function fixedHeaderProblem(type: number, remaining: number): string | undefined {
  if (type >> 4 === 3) return (type & 0x06) === 0x06 ? 'PUBLISH with QoS 3' : undefined;
  if (!CLIENT_PACKETS.has(type)) return `fixed header 0x${type.toString(16)} is not a client packet`;
  const want = CLIENT_PACKETS.get(type);
  return want !== undefined && remaining !== want ? `fixed header 0x${type.toString(16)} with remaining length ${remaining}, want ${want}` : undefined;
}

export class MqttFrameGuard extends Duplex {
  readonly #socket: Duplex;
  readonly #opts: FrameGuardOptions;
  #first = true;
  /** 'type': next byte is a fixed-header type byte; 'length': reading the varint; 'body': skipping. */
  #phase: 'type' | 'length' | 'body' = 'type';
  /** The fixed-header byte of the packet being read. */
  #type = 0;
  #lengthBytes = 0;
  #multiplier = 1;
  #remaining = 0;
  #violated = false;

  constructor(socket: Duplex, opts: FrameGuardOptions) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.#opts = opts;
    socket.on('data', (chunk: Buffer) => {
      if (this.#violated || !this.#inspect(chunk)) return;
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  /** True while the fixed headers seen so far are within limits. */
  #inspect(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.#phase === 'body') {
        const skip = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= skip;
        i += skip;
        if (this.#remaining === 0) this.#phase = 'type';
        continue;
      }
      const byte = chunk[i] as number;
      i += 1;
      if (this.#phase === 'type') {
        if (this.#first && byte !== CONNECT_FIXED_HEADER) {
          return this.#violate('first-packet-not-connect', `first byte 0x${byte.toString(16)}`);
        }
        this.#first = false;
        this.#type = byte;
        this.#phase = 'length';
        this.#lengthBytes = 0;
        this.#multiplier = 1;
        this.#remaining = 0;
        continue;
      }
      // MQTT 3.1.1 §2.2.3: at most four length bytes, 7 bits each, high bit = continuation.
      this.#remaining += (byte & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      this.#lengthBytes += 1;
      if (1 + this.#lengthBytes + this.#remaining > this.#opts.maxPacketBytes) {
        return this.#violate('packet-too-large', `announced at least ${this.#remaining} bytes`);
      }
      if ((byte & 0x80) !== 0) {
        if (this.#lengthBytes === 4) return this.#violate('bad-remaining-length', 'more than four length bytes');
        continue;
      }
      const problem = fixedHeaderProblem(this.#type, this.#remaining);
      if (problem !== undefined) return this.#violate('bad-fixed-header', problem);
      this.#phase = this.#remaining === 0 ? 'type' : 'body';
    }
    return true;
  }

  #violate(violation: FrameViolation, detail: string): false {
    this.#violated = true;
    this.#opts.onViolation(violation, detail);
    this.#socket.destroy();
    this.destroy();
    return false;
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#socket.destroyed) {
      callback(new Error('socket closed'));
      return;
    }
    this.#socket.write(chunk, callback);
  }

  /**
   * mqtt-packet writes one packet as several small buffers while the stream is corked: pass them
   * to the socket in one write (one syscall) instead of one write per buffer, each waiting for
   * the previous one to complete.
   */
  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    if (this.#socket.destroyed) {
      callback(new Error('socket closed'));
      return;
    }
    this.#socket.write(chunks.length === 1 ? (chunks[0] as { chunk: Buffer }).chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket.destroy();
    callback(error);
  }
}
