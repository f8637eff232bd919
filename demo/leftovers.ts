/**
 * The demo's pid file and the reaper that reads it. The demo records its own pid and those of
 * the processes it starts (swtpm, the backend process) in `<dir>/demo.pid`; a demo that starts
 * and finds the file of one that did not stop cleanly (a `kill -9`, a machine without setpriv)
 * kills that one's leftovers first — only after /proc/PID/cmdline shows the pid is still that
 * swtpm or backend of this directory, never a process that merely reused the pid.
 */
import { readFileSync, rmSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeJsonAtomic } from '../common/atomic-file.js';
import { CodedError } from '../common/errors.js';

export type DemoErrorCode =
  /** The backend process did not start. */
  | 'GH_DEMO_BACKEND_START'
  /** A leftover process of an earlier demo could not be reaped. */
  | 'GH_DEMO_LEFTOVER'
  /** A SIGHUP reload was refused; nothing changed. */
  | 'GH_DEMO_RELOAD'
  /** Another demo is running in this directory. */
  | 'GH_DEMO_RUNNING'
  /** A stop was requested while the demo was starting. */
  | 'GH_DEMO_STOPPED';

/** A failure of the demo's own process management. */
export class DemoError extends CodedError<DemoErrorCode> {}

export const PID_FILE = 'demo.pid';

export type ChildRole = 'swtpm' | 'backend';

/** What `<dir>/demo.pid` holds. */
export interface DemoPids {
  demo: number;
  swtpm?: number;
  backend?: number;
}

/** The argv of a live process (empty for a zombie), or undefined when there is none. */
export function cmdlineOf(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw === '' ? [] : raw.replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

/** True once `pid` has exited (gone, or a zombie waiting for its parent to reap it). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may itself contain spaces or ')').
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** Is `argv` the `role` process of the demo in `dir`? */
export function isDemoChild(role: ChildRole, argv: readonly string[], dir: string): boolean {
  if (role === 'swtpm') return basename(argv[0] ?? '') === 'swtpm' && argv.includes(`dir=${join(dir, 'swtpm')}`);
  const i = argv.indexOf('--data-dir');
  return argv.includes('serve') && i >= 0 && argv[i + 1] === join(dir, 'backend');
}

/** Is `argv` a `gatehouse demo` (any build: dist, tsx, installed)? */
function isDemo(argv: readonly string[]): boolean {
  return argv.includes('demo') && argv.some((a) => /gatehouse/.test(basename(a)));
}

function parsePids(text: string): DemoPids | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null) return undefined;
    const o = v as Record<string, unknown>;
    const pid = (x: unknown): number | undefined => (Number.isSafeInteger(x) && (x as number) > 1 ? (x as number) : undefined);
    const demo = pid(o.demo);
    if (demo === undefined) return undefined;
    const swtpm = pid(o.swtpm);
    const backend = pid(o.backend);
    return { demo, ...(swtpm !== undefined ? { swtpm } : {}), ...(backend !== undefined ? { backend } : {}) };
  } catch {
    return undefined;
  }
}

/** Read `<dir>/demo.pid`; undefined when absent or unreadable (a torn file names nothing to kill). */
export async function readPids(dir: string): Promise<DemoPids | undefined> {
  try {
    return parsePids(await readFile(join(dir, PID_FILE), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Polls `gone()` until it holds or `timeoutMs` passes; resolves whether it held. */
export async function waitUntil(gone: () => boolean, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!gone()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

export interface Reaped {
  role: ChildRole;
  pid: number;
}

/**
 * Kill what a previous demo in `dir` left running. Refuses (GH_DEMO_RUNNING) when that demo is
 * itself still running: two demos on one directory would delete each other's state.
 */
export async function reapLeftovers(dir: string, timeoutMs = 5_000): Promise<Reaped[]> {
  const pids = await readPids(dir);
  if (pids === undefined) return [];
  if (pids.demo !== process.pid && !processGone(pids.demo) && isDemo(cmdlineOf(pids.demo) ?? [])) {
    throw new DemoError('GH_DEMO_RUNNING', `another demo (pid ${pids.demo}) is running in ${dir}: stop it (kill ${pids.demo}) or give this one another --dir`);
  }
  const reaped: Reaped[] = [];
  for (const role of ['backend', 'swtpm'] as const) {
    const pid = pids[role];
    if (pid === undefined || processGone(pid) || !isDemoChild(role, cmdlineOf(pid) ?? [], dir)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      continue; // exited meanwhile
    }
    if (!(await waitUntil(() => processGone(pid), timeoutMs))) {
      throw new DemoError('GH_DEMO_LEFTOVER', `${role} pid ${pid} of a previous demo did not exit within ${timeoutMs} ms of SIGKILL`);
    }
    reaped.push({ role, pid });
  }
  await rm(join(dir, PID_FILE), { force: true });
  return reaped;
}

/** This demo's pid file: rewritten as children start, removed on a clean stop. */
export class PidFile {
  readonly #path: string;
  #pids: DemoPids;

  constructor(dir: string) {
    this.#path = join(dir, PID_FILE);
    this.#pids = { demo: process.pid };
  }

  get pids(): Readonly<DemoPids> {
    return this.#pids;
  }

  async record(role: ChildRole, pid: number): Promise<void> {
    this.#pids = { ...this.#pids, [role]: pid };
    await writeJsonAtomic(this.#path, this.#pids);
  }

  async write(): Promise<void> {
    await writeJsonAtomic(this.#path, this.#pids);
  }

  /** Synchronous, for exit paths where nothing asynchronous runs any more. */
  removeSync(): void {
    rmSync(this.#path, { force: true });
  }
}
