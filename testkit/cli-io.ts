/** Captured CliIO for CLI tests (service helper). */
import { PassThrough } from 'node:stream';
import type { CliIO } from '../common/cli-io.js';

export interface CapturedIO extends CliIO {
  out(): string;
  err(): string;
  /** Resolves once stdout contains `text`; rejects after `timeoutMs`. */
  waitForOut(text: string, timeoutMs?: number): Promise<void>;
}

export function captureIO(env: NodeJS.ProcessEnv = {}): CapturedIO {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  return {
    stdout,
    stderr,
    env,
    out: () => out,
    err: () => err,
    waitForOut(text, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        if (out.includes(text)) {
          resolve();
          return;
        }
        const onData = (): void => {
          if (out.includes(text)) {
            clearTimeout(timer);
            stdout.off('data', onData);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          stdout.off('data', onData);
          reject(new Error(`stdout did not show ${JSON.stringify(text)} within ${timeoutMs} ms; got: ${out}`));
        }, timeoutMs);
        stdout.on('data', onData);
      });
    },
  };
}
