/**
 * A real swtpm (TPM 2.0 simulator) as a child process, for the embedded demo and the tests:
 * started on free loopback ports with its own state directory, stopped by killing the process
 * and waiting for its exit, and restartable on the same state directory and ports (the
 * persistent key survives, as on a real TPM across a reboot). A process-exit hook kills anything
 * a failed run left behind. Field units use /dev/tpmrm0 instead (tpm.tcti).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.js';
import { dyingWithParent } from '../common/child-process.js';

export class SwtpmError extends GatehouseError {}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

function listenOn(port: number): Promise<{ port: number; close: () => Promise<void> } | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({ port: p, close: () => new Promise<void>((r) => srv.close(() => r())) });
    });
  });
}

/** The kernel's ephemeral port range: outgoing connections take their local ports from it. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined && Number.isInteger(lo) && Number.isInteger(hi)) return [lo, hi];
  } catch {
    // not Linux, or /proc hidden: assume the IANA range
  }
  return [49152, 65535];
}

async function pairFreeAt(port: number): Promise<boolean> {
  const a = await listenOn(port);
  if (!a) return false;
  const b = await listenOn(port + 1);
  await a.close();
  if (!b) return false;
  await b.close();
  return true;
}

/**
 * Two consecutive free loopback ports (swtpm uses P for commands and P+1 for control). Chosen
 * below the ephemeral range, so that a busy machine's outgoing connections (a storm of MQTT
 * clients, say) cannot be holding P+1; port 0's pick is the fallback.
 */
export async function freePortPair(): Promise<number> {
  const [ephemeralLow] = ephemeralRange();
  const low = 10_000;
  const high = Math.max(low + 2, ephemeralLow) - 2;
  for (let i = 0; i < 50; i++) {
    const p = low + randomInt(high - low);
    if (await pairFreeAt(p)) return p;
  }
  for (let i = 0; i < 20; i++) {
    const a = await listenOn(0);
    if (!a) continue;
    const p = a.port;
    await a.close();
    if (p < 65535 && (await pairFreeAt(p))) return p;
  }
  throw new SwtpmError('GH_SWTPM_NO_PORTS', 'no two consecutive free loopback ports found');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface SwtpmStartOptions {
  /** Pass --flags startup-clear (default true). False leaves the TPM waiting for TPM2_Startup. */
  startupClear?: boolean;
  /** Milliseconds to wait for the port to accept (default 10 s). */
  timeoutMs?: number;
  /** Keep the TPM state here (created if missing, kept by dispose()); a fresh temp dir when absent. */
  stateDir?: string;
  /**
   * Have the kernel kill swtpm when this process dies, however it dies (PR_SET_PDEATHSIG via
   * setpriv; same pid). The demo sets it: the exit hook below does not run on `kill -9`.
   */
  dieWithParent?: boolean;
}

export class Swtpm {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stderr = '';
  /** Set by start(): restart() keeps it. */
  #dieWithParent = false;

  /** True when the state directory is a temp dir of ours, deleted by dispose(). */
  readonly #ownsStateDir: boolean;

  private constructor(
    readonly port: number,
    readonly stateDir: string,
    ownsStateDir: boolean,
  ) {
    this.#ownsStateDir = ownsStateDir;
  }

  /** TCTI loader string for this instance. */
  get tcti(): string {
    return `swtpm:host=127.0.0.1,port=${this.port}`;
  }

  get ctrlPort(): number {
    return this.port + 1;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** PID of the running process (tests use it to prove nothing is left behind). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  static async start(opts: SwtpmStartOptions = {}): Promise<Swtpm> {
    installExitHook();
    const owned = opts.stateDir === undefined;
    const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'gh-swtpm-')));
    if (!owned) await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const t = new Swtpm(await freePortPair(), stateDir, owned);
    t.#dieWithParent = opts.dieWithParent === true;
    try {
      await t.#launch(opts);
    } catch (err) {
      if (owned) await rm(stateDir, { recursive: true, force: true });
      throw err;
    }
    return t;
  }

  async #launch(opts: SwtpmStartOptions): Promise<void> {
    const flags = opts.startupClear === false ? 'not-need-init' : 'not-need-init,startup-clear';
    const args = [
      'socket', '--tpm2',
      '--server', `type=tcp,port=${this.port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${this.ctrlPort},bindaddr=127.0.0.1`,
      '--tpmstate', `dir=${this.stateDir}`,
      '--flags', flags,
    ];
    const cmd = (opts.dieWithParent ?? this.#dieWithParent) ? dyingWithParent('swtpm', args) : { command: 'swtpm', args };
    const child = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-4000);
    });
    live.add(child);
    this.#child = child;
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
      child.once('error', () => {
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    let delay = 5;
    for (;;) {
      if (this.#child !== child) throw new SwtpmError('GH_SWTPM_EXITED', `swtpm exited before accepting connections: ${this.#stderr}`);
      if (await canConnect(this.port)) return;
      if (Date.now() > deadline) {
        await this.stop('SIGKILL');
        throw new SwtpmError('GH_SWTPM_TIMEOUT', `swtpm did not accept connections on port ${this.port}: ${this.#stderr}`);
      }
      // Polling a port that is being bound: back off a little between connection attempts.
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Kill the process and wait until it has exited (SIGKILL after 5 s of SIGTERM). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = this.#exited;
    child.kill('SIGCONT'); // a paused process would not act on SIGTERM
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Simulate a crash/power loss: SIGKILL and wait for exit. */
  kill(): Promise<void> {
    return this.stop('SIGKILL');
  }

  /** Freeze the process (SIGSTOP): it keeps its sockets but answers nothing, like a hung TPM. */
  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  /** Undo `pause()` (SIGCONT). */
  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  /** Start again on the same ports and state directory. */
  async restart(opts: SwtpmStartOptions = {}): Promise<void> {
    await this.stop();
    await this.#launch(opts);
  }

  /** Stop, and delete the state directory if it is our temp dir. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.#ownsStateDir) await rm(this.stateDir, { recursive: true, force: true });
  }
}
