/**
 * A Debian 12 container with systemd as PID 1, booted with systemd-nspawn from the cached tree
 * (test/system/bookworm-tree.sh), for the system tests. Every write goes to a throw-away overlay
 * (--volatile=overlay); the container shares the host's network, so it reaches swtpm and the
 * reference backend on 127.0.0.1 and peripherals on the host reach its broker.
 *
 * There is no system bus on the host: the container is neither registered with machined nor put
 * in a scope of its own (--register=no --keep-unit), and commands run inside it through nsenter
 * into its PID 1's namespaces (machinectl and systemd-run -M need that bus).
 *
 * Every container booted here is remembered until it is gone; `shutdownAll()` (and, as a last
 * resort, process exit) ends it, so no process or mount is left behind even when a test fails.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Commands run in the container see only this environment. */
const INNER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

const live = new Set<Container>();
process.once('exit', () => {
  for (const c of live) c.killNow();
});

/** Why these tests cannot run here, or undefined when they can. */
export function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'the system tests boot a container with systemd-nspawn and must run as root';
  const onPath = (bin: string): boolean => (process.env.PATH ?? '/usr/bin:/bin').split(':').some((p) => p !== '' && existsSync(join(p, bin)));
  const need: [string, string][] = [
    ['systemd-nspawn', 'systemd-container'],
    ['debootstrap', 'debootstrap'],
    ['nsenter', 'util-linux'],
    ['dpkg-deb', 'dpkg'],
    ['dpkg-shlibdeps', 'dpkg-dev'],
    ['fakeroot', 'fakeroot'],
    ['swtpm', 'swtpm'],
  ];
  const missing = need.filter(([bin]) => !onPath(bin));
  if (missing.length > 0) return `missing ${missing.map(([b, p]) => `${b} (Debian package ${p})`).join(', ')}: run ./setup.sh`;
  if (!existsSync('/usr/bin/node')) return '/usr/bin/node is missing: the container runs the host node bind-mounted at /usr/bin/node';
  return undefined;
}

/** Runs a host command to completion (bounded); never throws for a non-zero exit. */
export function run(file: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    // Its own process group: a signal to "the process group" inside (kill 0) never reaches the test runner.
    const options = { timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL' as const, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env, detached: true };
    const child = execFile(file, args, options, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (code === -1 && err !== null ? `\n[${err.message}]` : '') });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

export interface BootOptions {
  tree: string;
  /** host path → container path, read-only. */
  bindRo: [string, string][];
  /** The IP firewall (IPAddressAllow/Deny) is enforced only with BPF in the container's unified cgroup. */
  firewall: boolean;
  timeoutMs?: number;
}

export class Container {
  #output = '';
  #exited = false;
  readonly #exit: Promise<void>;

  private constructor(
    readonly nspawn: ChildProcess,
    readonly machine: string,
  ) {
    nspawn.stdout?.on('data', (d: Buffer) => (this.#output = (this.#output + d.toString('utf8')).slice(-20_000)));
    nspawn.stderr?.on('data', (d: Buffer) => (this.#output = (this.#output + d.toString('utf8')).slice(-20_000)));
    this.#exit = new Promise((resolve) => {
      nspawn.once('close', () => {
        this.#exited = true;
        live.delete(this);
        resolve();
      });
    });
    live.add(this);
  }

  /** Console and nspawn messages so far (the last 20 kB). */
  get output(): string {
    return this.#output;
  }

  /** Boots the tree and waits until systemd reports the system up (running or degraded). */
  static async boot(o: BootOptions): Promise<Container> {
    const machine = `gh-test-${process.pid}-${Date.now() % 100000}`;
    const args = ['-D', o.tree, '--volatile=overlay', '--boot', '--register=no', '--keep-unit', '--console=pipe', `--machine=${machine}`, '--bind-ro=/usr/bin/node'];
    for (const [host, inner] of o.bindRo) args.push(`--bind-ro=${host}:${inner}`);
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
    if (o.firewall) {
      env.SYSTEMD_NSPAWN_UNIFIED_HIERARCHY = '1';
      args.push('--capability=CAP_BPF,CAP_NET_ADMIN', '--system-call-filter=bpf');
    }
    const child = spawn('systemd-nspawn', args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const c = new Container(child, machine);
    try {
      const deadline = Date.now() + (o.timeoutMs ?? 60_000);
      // PID 1 of the container: systemd, a descendant of nspawn.
      while (c.pid1() === undefined) {
        if (c.#exited) throw new Error(`systemd-nspawn exited while booting:\n${c.output}`);
        if (Date.now() > deadline) throw new Error(`the container's systemd did not appear:\n${c.output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      // Until systemd's private socket exists, systemctl cannot connect: ask again.
      for (;;) {
        const left = Math.max(1000, deadline - Date.now());
        const r = await c.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: left });
        const state = r.stdout.trim();
        if (state === 'running' || state === 'degraded') return c;
        if (Date.now() > deadline || !/Failed to connect to bus/.test(r.stderr)) throw new Error(`the container did not come up: ${state} ${r.stderr}\n${c.output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (err) {
      await c.shutdown();
      throw err;
    }
  }

  /** The host PID of the container's PID 1 (systemd), once it runs. */
  pid1(): number | undefined {
    const nspawnPid = this.nspawn.pid;
    if (nspawnPid === undefined || this.#exited) return undefined;
    // nspawn → (possibly an intermediate child) → systemd.
    const frontier = [nspawnPid];
    for (let depth = 0; depth < 3 && frontier.length > 0; depth++) {
      const next: number[] = [];
      for (const parent of frontier) {
        for (const pid of childrenOf(parent)) {
          if (readProc(pid, 'comm') === 'systemd') return pid;
          next.push(pid);
        }
      }
      frontier.splice(0, frontier.length, ...next);
    }
    return undefined;
  }

  /** Runs a command inside the container (all of PID 1's namespaces, its root and cwd). */
  async exec(cmd: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    const pid = this.pid1();
    if (pid === undefined) return { code: -1, stdout: '', stderr: 'the container is not running' };
    return run('nsenter', ['-t', String(pid), '-m', '-u', '-i', '-n', '-p', '-r', '-w', ...cmd], { ...opts, env: INNER_ENV });
  }

  /** `sh -c script` inside; throws with the output unless it exits 0. */
  async sh(script: string, opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    const r = await this.exec(['sh', '-c', script], opts);
    if (r.code !== 0) throw new Error(`in the container: ${script}\nexit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** Writes `content` to `path` inside the container. */
  async writeFile(path: string, content: string, mode = '0644', group = 'root'): Promise<void> {
    await this.sh(`umask 077; cat > "$0.tmp" && chmod ${mode} "$0.tmp" && chgrp ${group} "$0.tmp" && mv "$0.tmp" "$0"`.replaceAll('$0', path), { input: content });
  }

  /** `systemctl poweroff`, then SIGKILL if it has not ended within `timeoutMs`. Idempotent. */
  async shutdown(timeoutMs = 20_000): Promise<void> {
    if (this.#exited) return;
    await this.exec(['systemctl', 'poweroff', '--no-block'], { timeoutMs: 5000 });
    const ended = await Promise.race([this.#exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
    if (!ended) {
      this.killNow();
      await Promise.race([this.#exit, new Promise((r) => setTimeout(r, 5000).unref())]);
    }
    // nspawn leaves its (empty) mount-propagation directory behind when killed; never a mount.
    await run('rmdir', ['--ignore-fail-on-non-empty', this.propagateDir]);
  }

  /** Where nspawn prepares mount propagation into the container. */
  get propagateDir(): string {
    return `/run/systemd/nspawn/propagate/${this.machine}`;
  }

  /** SIGKILL to the container's PID 1 (which ends its PID namespace) and to nspawn. */
  killNow(): void {
    const pid = this.pid1();
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (!this.#exited) this.nspawn.kill('SIGKILL');
  }
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const task of safeReaddir(`/proc/${parent}/task`)) {
    const kids = readProc(parent, `task/${task}/children`);
    if (kids) for (const k of kids.split(/\s+/)) out.push(Number(k));
  }
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Host processes whose command line or root mentions `needle` (leftover check). */
export function hostProcessesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = readProc(Number(name), 'cmdline')?.replaceAll('\0', ' ') ?? '';
    if (cmd.includes(needle)) found.push(`${name} ${cmd}`);
  }
  return found;
}
