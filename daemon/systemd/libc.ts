/**
 * The few libc socket calls sd_notify needs, through koffi (no native addon of our own).
 * Node has no AF_UNIX datagram sockets, and the notification protocol (sd_notify(3)) is one
 * datagram to $NOTIFY_SOCKET. Loaded lazily on first use; never at import time.
 */
import { createRequire } from 'node:module';

export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
/** sizeof(struct sockaddr_un.sun_path) on Linux. */
export const SUN_PATH_MAX = 108;

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number;
  bind(fd: number, addr: Buffer, addrlen: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  /** recv on koffi's worker thread, so a blocking wait does not stall the event loop. */
  recvAsync(fd: number, buf: Buffer, len: number, flags: number): Promise<number>;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  close(fd: number): number;
  errno(): number;
}

let cached: Libc | undefined;

/** Bind libc on first use. Throws when koffi or libc cannot be loaded. */
export function libc(): Libc {
  if (cached !== undefined) return cached;
  // koffi is CommonJS; createRequire keeps the load lazy and synchronous.
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  const recv = lib.func('long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)');
  const c: Libc = {
    socket: lib.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    sendto: lib.func('long sendto(int fd, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, uint32_t addrlen)') as Libc['sendto'],
    bind: lib.func('int bind(int fd, const uint8_t *addr, uint32_t addrlen)') as Libc['bind'],
    recv: recv as Libc['recv'],
    recvAsync: (fd, buf, len, flags) =>
      new Promise((resolve, reject) => {
        recv.async(fd, buf, len, flags, (err: unknown, n: number) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(n)));
      }),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const uint8_t *value, uint32_t len)') as Libc['setsockopt'],
    close: lib.func('int close(int fd)') as Libc['close'],
    errno: () => koffi.errno(),
  };
  cached = c;
  return c;
}

/**
 * Build a `struct sockaddr_un` for `path`. A leading `@` is the abstract namespace (first
 * byte NUL), as systemd writes it in $NOTIFY_SOCKET. Returns the buffer and the address length.
 */
export function sockaddrUn(path: string): { addr: Buffer; len: number } {
  const abstract = path.startsWith('@');
  const name = Buffer.from(abstract ? path.slice(1) : path, 'utf8');
  const pathBytes = name.length + 1; // NUL terminator, or the leading NUL of an abstract name
  if (name.length === 0 || pathBytes > SUN_PATH_MAX) throw new RangeError(`unix socket path length ${name.length} out of range`);
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, abstract ? 3 : 2);
  // Abstract names are length-delimited (no terminator counts); path names include the NUL.
  return { addr, len: 2 + (abstract ? 1 + name.length : pathBytes) };
}
