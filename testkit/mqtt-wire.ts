/**
 * A minimal MQTT 3.1.1 client over raw TCP for the load generators and the fuzzer: CONNECT,
 * SUBSCRIBE, PUBLISH (QoS 0/1), PUBACK, DISCONNECT. mqtt.js costs ~10x more CPU and memory per
 * connection, which would make thousands of simulated peripherals the bottleneck instead of the
 * gateway. Encoders are exported so the fuzzer can build valid packets and then break them.
 */
import net from 'node:net';

/** MQTT 3.1.1 §2.2.3: variable-length "remaining length", 1–4 bytes. */
export function encodeRemainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), encodeRemainingLength(body.length), body]);
}

export function connectPacket(clientId: string, keepaliveSec: number, flags = 0x02): Buffer {
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(keepaliveSec);
  return packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, flags]), ka, str(clientId)]));
}

export function subscribePacket(packetId: number, topic: string, qos: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(packetId);
  return packet(0x82, Buffer.concat([id, str(topic), Buffer.from([qos])]));
}

export function publishPacket(topic: string, payload: Uint8Array, qos: 0 | 1, packetId = 1): Buffer {
  const parts = [str(topic)];
  if (qos > 0) {
    const id = Buffer.alloc(2);
    id.writeUInt16BE(packetId);
    parts.push(id);
  }
  parts.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
  return packet(0x30 | (qos << 1), Buffer.concat(parts));
}

export function pubackPacket(packetId: number): Buffer {
  return Buffer.from([0x40, 2, packetId >> 8, packetId & 0xff]);
}

export const DISCONNECT = Buffer.from([0xe0, 0]);
export const PINGREQ = Buffer.from([0xc0, 0]);

export class RawMqttError extends Error {}

export interface RawMqttOptions {
  host: string;
  port: number;
  clientId: string;
  keepaliveSec?: number;
  /** Deadline of CONNECT→CONNACK and SUBSCRIBE→SUBACK (default 30 000 ms). */
  timeoutMs?: number;
  /** Source address to connect from (e.g. 127.0.0.2: every 127/8 address reaches loopback on Linux). */
  localAddress?: string;
}

/** One MQTT connection. Incoming QoS 1 publishes are acknowledged at once. */
export class RawMqttClient {
  /** Called for every PUBLISH from the broker. */
  onMessage: (topic: string, payload: Buffer) => void = () => undefined;
  /** Called once when the socket closes. */
  onClose: () => void = () => undefined;
  /** Called for every PUBACK from the broker, with its packet id. */
  onPuback: (packetId: number) => void = () => undefined;
  readonly #socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #nextId = 1;
  #closed = false;
  #corked = false;
  #pending: ((first: number, body: Buffer) => void) | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#data(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      const p = this.#pending;
      this.#pending = undefined;
      p?.(-1, Buffer.alloc(0));
      this.onClose();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** TCP connect, CONNECT, CONNACK 0 — or a RawMqttError. */
  static async connect(o: RawMqttOptions): Promise<RawMqttClient> {
    const socket = net.connect({ host: o.host, port: o.port, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) });
    const c = new RawMqttClient(socket);
    const ack = c.#expect(0x20, o.timeoutMs ?? 30_000, 'CONNACK');
    socket.write(connectPacket(o.clientId, o.keepaliveSec ?? 300));
    const body = await ack;
    if (body[1] !== 0) {
      c.destroy();
      throw new RawMqttError(`CONNACK return code ${body[1] ?? '?'}`);
    }
    return c;
  }

  /** SUBSCRIBE one filter; resolves with the granted QoS (0x80 = refused). */
  async subscribe(topic: string, qos: number, timeoutMs = 30_000): Promise<number> {
    const ack = this.#expect(0x90, timeoutMs, 'SUBACK');
    this.#socket.write(subscribePacket(this.#id(), topic, qos));
    const body = await ack;
    return body[2] ?? 0x80;
  }

  /** PUBLISH without waiting for the PUBACK (onPuback sees it); answers the packet id used (0 when closed). */
  publish(topic: string, payload: Uint8Array, qos: 0 | 1): number {
    if (this.#closed) return 0;
    const id = this.#id();
    this.#socket.write(publishPacket(topic, payload, qos, id));
    return id;
  }

  /** Clean DISCONNECT then close. */
  end(): void {
    if (this.#closed) return;
    this.#socket.end(DISCONNECT);
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #id(): number {
    const id = this.#nextId;
    this.#nextId = id >= 0xffff ? 1 : id + 1;
    return id;
  }

  #expect(type: number, timeoutMs: number, what: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        this.destroy();
        reject(new RawMqttError(`${what} not received within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending = (first, body) => {
        clearTimeout(timer);
        this.#pending = undefined;
        if (first === -1) reject(new RawMqttError(`connection closed before ${what}`));
        else if ((first & 0xf0) !== type) reject(new RawMqttError(`expected ${what}, got packet type ${first >> 4}`));
        else resolve(body);
      };
    });
  }

  #data(chunk: Buffer): void {
    // What this chunk makes us send (the PUBACK of a challenge, then the hello the peripheral
    // computes from it in later microtasks) leaves in one write at the end of this loop turn,
    // as a client with a write queue sends it: one syscall instead of two per exchange.
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      setImmediate(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const buf = this.#buf;
      if (buf.length < 2) return;
      let len = 0;
      let mul = 1;
      let i = 1;
      for (;;) {
        if (i >= buf.length) return;
        const b = buf[i++] as number;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) break;
        if (i > 4) {
          this.destroy();
          return;
        }
      }
      if (buf.length < i + len) return;
      const first = buf[0] as number;
      const body = buf.subarray(i, i + len);
      this.#buf = buf.subarray(i + len);
      this.#packet(first, body);
    }
  }

  #packet(first: number, body: Buffer): void {
    const type = first >> 4;
    if (type === 3) {
      const qos = (first >> 1) & 3;
      const tlen = body.readUInt16BE(0);
      const topic = body.toString('utf8', 2, 2 + tlen);
      let off = 2 + tlen;
      if (qos > 0) {
        const id = body.readUInt16BE(off);
        off += 2;
        this.#socket.write(pubackPacket(id));
      }
      this.onMessage(topic, body.subarray(off));
      return;
    }
    if (type === 4) {
      if (body.length >= 2) this.onPuback(body.readUInt16BE(0));
      return;
    }
    if (type === 13) return; // PINGRESP
    const p = this.#pending;
    if (p !== undefined) p(first, body);
  }
}
