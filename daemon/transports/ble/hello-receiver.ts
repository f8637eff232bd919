/**
 * Waiting parts of a BLE exchange: the hello reassembly and abortable waits. Pure of I/O.
 */
import { Reassembler } from '../../../protocol/index.js';

/**
 * Reassembles notified chunks into the one hello of an exchange. `message` rejects on a framing
 * violation (protocol-v1: the exchange aborts) or when `signal` aborts; chunks after the hello
 * are ignored until the gateway disconnects.
 */
export function helloReceiver(mtu: number, signal: AbortSignal): { push: (v: Uint8Array) => void; message: Promise<Uint8Array> } {
  const reassembler = new Reassembler({ mtu });
  let settle: { resolve: (m: Uint8Array) => void; reject: (e: unknown) => void } | undefined;
  const message = new Promise<Uint8Array>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const onAbort = (): void => settle?.reject(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const done = (): void => {
    settle = undefined;
    signal.removeEventListener('abort', onAbort);
  };
  // Without a consumer yet (challenge still in flight), an early failure must not go unhandled.
  message.catch(() => undefined);
  const push = (value: Uint8Array): void => {
    if (!settle) return; // one hello per exchange; anything after it is ignored until disconnect
    try {
      const m = reassembler.push(value);
      if (m) {
        settle.resolve(m);
        done();
      }
    } catch (err) {
      // protocol-v1: a gap in the indices or a message over 1024 bytes aborts the exchange.
      settle.reject(err);
      done();
    }
  };
  return { push, message };
}

/** `p`, or the signal's reason as soon as `signal` aborts (`p` keeps running, its result is dropped). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}
