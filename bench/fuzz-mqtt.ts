/**
 * A raw-TCP MQTT fuzzer against the daemon's embedded broker: malformed CONNECT, PUBLISH and
 * SUBSCRIBE, reserved packet types and flags, huge and invalid remaining lengths, mutated valid
 * packets, and slowloris connections that trickle a CONNECT a byte at a time. Meanwhile a
 * legitimate peripheral authenticates every `checkEveryMs`, and the daemon's RSS is sampled.
 */
import net from 'node:net';
import { connectPacket, encodeRemainingLength, publishPacket, subscribePacket } from '../testkit/mqtt-wire.js';
import { Prng } from './fuzz-decoders.js';

function raw(first: number, body: number[] | Buffer): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([Buffer.from([first]), encodeRemainingLength(b.length), b]);
}

function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

/** Named hostile packet sequences; each gets its own connection. */
export function hostileCases(r: Prng): [string, Buffer[]][] {
  const dev = `fuzz-${r.int(1e6)}`;
  const ok = connectPacket(dev, 60);
  const connectWith = (proto: string, level: number, flags: number, tail: Buffer): Buffer => raw(0x10, Buffer.concat([str(proto), Buffer.from([level, flags, 0, 60]), tail]));
  return [
    ['CONNECT wrong protocol name', [connectWith('MQTX', 4, 2, str(dev))]],
    ['CONNECT protocol level 255', [connectWith('MQTT', 255, 2, str(dev))]],
    ['CONNECT reserved flag bit 0 set [MQTT-3.1.2-3]', [connectWith('MQTT', 4, 3, str(dev))]],
    ['CONNECT will QoS 3', [connectWith('MQTT', 4, 0x1e, Buffer.concat([str(dev), str('t'), str('m')]))]],
    ['CONNECT username flag without a username', [connectWith('MQTT', 4, 0x82, str(dev))]],
    ['CONNECT password without username', [connectWith('MQTT', 4, 0x42, Buffer.concat([str(dev), str('pw')]))]],
    ['CONNECT client id of invalid UTF-8', [connectWith('MQTT', 4, 2, str(Buffer.from([0xc3, 0x28, 0xff])))]],
    ['CONNECT client id with NUL', [connectWith('MQTT', 4, 2, str(`a\u0000b`))]],
    ['CONNECT truncated', [ok.subarray(0, 1 + r.int(ok.length - 1))]],
    ['CONNECT remaining length too long (5 bytes)', [Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])]],
    ['CONNECT huge remaining length (268 MB), then trickle', [Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(4096, 0x41)]],
    ['CONNECT twice [MQTT-3.1.0-2]', [ok, ok]],
    ['PUBLISH before CONNECT', [publishPacket(`gatehouse/v1/${dev}/up`, Buffer.from([0xa0]), 1)]],
    ['PUBLISH QoS 3', [ok, raw(0x36, Buffer.concat([str(`gatehouse/v1/${dev}/up`), Buffer.from([0, 1, 0xa0])]))]],
    ['PUBLISH wildcard topic', [ok, publishPacket('gatehouse/v1/+/up', Buffer.from([0xa0]), 1)]],
    ['PUBLISH empty topic', [ok, publishPacket('', Buffer.from([0xa0]), 1)]],
    ['PUBLISH topic with NUL', [ok, publishPacket(`gatehouse/v1/${dev}\u0000/up`, Buffer.from([0xa0]), 1)]],
    ['PUBLISH on a down topic', [ok, publishPacket(`gatehouse/v1/${dev}/down`, Buffer.from([0xa0]), 1)]],
    ['PUBLISH on another device after binding', [ok, publishPacket(`gatehouse/v1/${dev}/up`, Buffer.from([0xa0]), 1), publishPacket('gatehouse/v1/other/up', Buffer.from([0xa0]), 1)]],
    ['PUBLISH auth payload of 60 kB', [ok, publishPacket(`gatehouse/v1/${dev}/up`, Buffer.alloc(60_000, 0x5f), 1)]],
    ['PUBLISH claiming 16 MB', [ok, Buffer.from([0x32, 0x80, 0x80, 0x80, 0x08, 0, 4, 0x61])]],
    ['PUBLISH garbage CBOR x50', [ok, ...Array.from({ length: 50 }, () => publishPacket(`gatehouse/v1/${dev}/up`, Buffer.from(Array.from({ length: 1 + r.int(200) }, () => r.int(256))), 1))]],
    ['PUBLISH application topic before welcome', [ok, publishPacket(`devices/${dev}/x`, Buffer.from('x'), 0)]],
    ['SUBSCRIBE reserved flags 0x80 [MQTT-3.8.1-1]', [ok, raw(0x80, Buffer.concat([Buffer.from([0, 1]), str(`gatehouse/v1/${dev}/down`), Buffer.from([1])]))]],
    ['SUBSCRIBE QoS 3', [ok, subscribePacket(1, `gatehouse/v1/${dev}/down`, 3)]],
    ['SUBSCRIBE empty filter', [ok, subscribePacket(1, '', 1)]],
    ['SUBSCRIBE #', [ok, subscribePacket(1, '#', 1)]],
    ['SUBSCRIBE $SYS/#', [ok, subscribePacket(1, '$SYS/#', 1)]],
    ['SUBSCRIBE gatehouse/v1/+/down', [ok, subscribePacket(1, 'gatehouse/v1/+/down', 1)]],
    ['SUBSCRIBE without filters', [ok, raw(0x82, [0, 1])]],
    ['SUBSCRIBE 500 filters', [ok, raw(0x82, Buffer.concat([Buffer.from([0, 1]), ...Array.from({ length: 500 }, (_, i) => Buffer.concat([str(`devices/${dev}/cmd/${i}`), Buffer.from([1])]))]))]],
    ['reserved packet type 0', [ok, Buffer.from([0x00, 0x00])]],
    ['reserved packet type 15', [ok, Buffer.from([0xf0, 0x00])]],
    ['PUBREL with wrong flags', [ok, Buffer.from([0x60, 0x02, 0x00, 0x01])]],
    ['PINGREQ with a body', [ok, Buffer.from([0xc0, 0x02, 0x00, 0x00])]],
    ['DISCONNECT with flags', [ok, Buffer.from([0xe1, 0x00])]],
    ['random bytes', [Buffer.from(Array.from({ length: 1 + r.int(300) }, () => r.int(256)))]],
    ['mutated CONNECT', [mutateBuf(r, ok)]],
    ['CONNECT then mutated SUBSCRIBE', [ok, mutateBuf(r, subscribePacket(1, `gatehouse/v1/${dev}/down`, 1))]],
    ['CONNECT then mutated PUBLISH', [ok, mutateBuf(r, publishPacket(`gatehouse/v1/${dev}/up`, Buffer.from([0xa3, 0x01, 0x61]), 1))]],
  ];
}

function mutateBuf(r: Prng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let k = 1 + r.int(3); k > 0; k -= 1) out[r.int(out.length)] = r.int(256);
  return out;
}

/** Sends one case on a fresh connection; resolves when the broker closes it or after `lingerMs`. */
export function sendCase(port: number, packets: Buffer[], lingerMs: number): Promise<'closed' | 'open' | 'refused'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let settled = false;
    const done = (v: 'closed' | 'open' | 'refused'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done('open'), lingerMs);
    s.on('connect', () => {
      for (const p of packets) s.write(p);
    });
    s.on('data', () => undefined);
    s.on('error', () => done('refused'));
    s.on('close', () => done('closed'));
  });
}

/** A slowloris: a CONNECT one byte every `everyMs`; resolves when the broker drops it. */
export function slowloris(port: number, everyMs: number, capMs: number): Promise<{ closedByBroker: boolean; heldMs: number }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const bytes = connectPacket(`slow-${Math.random().toString(36).slice(2, 8)}`, 60);
    const t0 = performance.now();
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closedByBroker: boolean): void => {
      clearInterval(timer);
      clearTimeout(cap);
      s.destroy();
      resolve({ closedByBroker, heldMs: performance.now() - t0 });
    };
    const cap = setTimeout(() => finish(false), capMs);
    s.on('connect', () => {
      timer = setInterval(() => {
        if (i < bytes.length - 1) s.write(bytes.subarray(i, ++i));
      }, everyMs);
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(true));
  });
}
