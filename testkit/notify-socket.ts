/**
 * A receiving AF_UNIX datagram socket to stand in for systemd's $NOTIFY_SOCKET (service
 * helper). Node has no unix datagram sockets, so this uses the same koffi libc bindings as
 * the notifier. Receives run on koffi's worker thread with a kernel receive timeout
 * (SO_RCVTIMEO), so a missing message fails the test instead of hanging it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET, SO_RCVTIMEO, MSG_DONTWAIT, libc, sockaddrUn } from '../daemon/systemd/libc.js';

export interface NotifySocket {
  /** The value for NOTIFY_SOCKET. */
  readonly path: string;
  /** The next datagram as text; rejects after `timeoutSec` without one. */
  next(): Promise<string>;
  /** Datagrams already queued, without waiting. */
  drain(): string[];
  close(): Promise<void>;
}

/**
 * `abstract`: bind in the abstract namespace (`@name`), as systemd itself does for
 * $NOTIFY_SOCKET on recent versions; otherwise a path in a temp directory.
 */
export async function openNotifySocket(timeoutSec = 5, abstract = false): Promise<NotifySocket> {
  const dir = await mkdtemp(join(tmpdir(), 'gh-notify-'));
  const path = abstract ? `@gatehouse-test-notify-${process.pid}-${Date.now()}` : join(dir, 'notify.sock');
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket() errno ${c.errno()}`);
  const { addr, len } = sockaddrUn(path);
  if (c.bind(fd, addr, len) !== 0) throw new Error(`bind() errno ${c.errno()}`);
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(timeoutSec), 0);
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) !== 0) throw new Error(`setsockopt() errno ${c.errno()}`);
  let closed = false;
  return {
    path,
    async next() {
      const buf = Buffer.alloc(4096);
      const n = await c.recvAsync(fd, buf, buf.length, 0);
      if (n < 0) throw new Error(`no notification within ${timeoutSec}s`);
      return buf.subarray(0, n).toString('utf8');
    },
    drain() {
      const out: string[] = [];
      for (;;) {
        const buf = Buffer.alloc(4096);
        const n = c.recv(fd, buf, buf.length, MSG_DONTWAIT);
        if (n < 0) return out;
        out.push(buf.subarray(0, n).toString('utf8'));
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      c.close(fd);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
