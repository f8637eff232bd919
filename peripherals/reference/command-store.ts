/**
 * Where the reference peripheral keeps the last command it acted on and the status it answered
 * (protocol-v2 "Commands": kept across restarts). A port, so the session library stays free of
 * I/O: a file implementation for real use, an in-memory one for tests and emulated devices.
 */
import { readJsonState, writeJsonAtomic } from '../../common/atomic-file.js';
import type { LastCommand } from '../../protocol/index.js';

export interface CommandStore {
  load(): Promise<LastCommand | undefined>;
  /** Durable before it resolves: the ack goes out only after. */
  save(last: LastCommand): Promise<void>;
}

function validate(v: unknown): LastCommand {
  if (typeof v !== 'object' || v === null) throw new TypeError('not an object');
  const { format, cid, status } = v as Record<string, unknown>;
  if (format !== 'gatehouse-last-command') throw new TypeError('wrong format');
  if (typeof cid !== 'number' || !Number.isSafeInteger(cid) || cid < 0) throw new TypeError('cid must be a uint');
  if (status !== 'done' && status !== 'failed') throw new TypeError('status must be done or failed');
  return { cid, status };
}

/** JSON `{"format":"gatehouse-last-command","cid","status"}`, written atomically (mode 0600). */
export class FileCommandStore implements CommandStore {
  constructor(readonly path: string) {}

  load(): Promise<LastCommand | undefined> {
    return readJsonState(this.path, validate);
  }

  save(last: LastCommand): Promise<void> {
    return writeJsonAtomic(this.path, { format: 'gatehouse-last-command', cid: last.cid, status: last.status });
  }
}

/** Kept in memory only: a device that forgets on restart (tests, emulated peripherals). */
export class MemoryCommandStore implements CommandStore {
  constructor(private last?: LastCommand) {}

  load(): Promise<LastCommand | undefined> {
    return Promise.resolve(this.last);
  }

  save(last: LastCommand): Promise<void> {
    this.last = { ...last };
    return Promise.resolve();
  }
}
