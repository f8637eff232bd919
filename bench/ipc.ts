/** IPC with the bench's forked workers: one request/answer with a deadline, and waiting for exit. */
import type { ChildProcess } from 'node:child_process';

/**
 * Sends `msg` (none when undefined) and resolves with the first message whose op is `expectOp`;
 * rejects on an `{op: 'error', message}` answer or after `timeoutMs`.
 */
export function ask<T>(child: ChildProcess, msg: unknown, expectOp: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMsg);
      reject(new Error(`${expectOp}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMsg = (m: { op: string; message?: string }): void => {
      if (m.op !== expectOp && m.op !== 'error') return;
      clearTimeout(timer);
      child.off('message', onMsg);
      if (m.op === 'error') reject(new Error(`worker failed: ${m.message ?? ''}`));
      else resolve(m as T);
    };
    child.on('message', onMsg);
    if (msg !== undefined) child.send(msg as object);
  });
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}
