/**
 * The kernel limits the bench runs under. A shipped gateway gets systemd/gatehouse.sysctl.conf
 * (installed by systemd/install.sh): accept queues deep enough for a reconnect storm. The bench
 * measures that configuration without touching the host: as root it re-runs itself in a private
 * network namespace (`unshare -n`; loopback only, which is all the bench uses), raises the limits
 * there, and leaves the host's as they were. Without root, or where namespaces are refused, it
 * runs on the host's limits and says so (a storm beyond net.core.somaxconn then sees retries).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SYSCTL_FILE = fileURLToPath(new URL('../systemd/gatehouse.sysctl.conf', import.meta.url));
const MARK = 'GATEHOUSE_BENCH_NETNS';

export interface BenchNetwork {
  /** 'netns': a private namespace with the shipped limits; 'host': the host's. */
  kind: 'netns' | 'host';
  somaxconn: number;
  tcpMaxSynBacklog: number;
  /** Why the host's limits were used, when they were. */
  note?: string;
}

/** `key = value` lines of systemd/gatehouse.sysctl.conf as `key=value`. */
export function shippedSysctls(file = SYSCTL_FILE): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\s*=\s*/, '='));
}

function readSysctl(path: string): number {
  return Number(readFileSync(`/proc/sys/${path}`, 'utf8').trim());
}

function current(kind: BenchNetwork['kind'], note?: string): BenchNetwork {
  return {
    kind,
    somaxconn: readSysctl('net/core/somaxconn'),
    tcpMaxSynBacklog: readSysctl('net/ipv4/tcp_max_syn_backlog'),
    ...(note !== undefined ? { note } : {}),
  };
}

/**
 * Call first thing. In the re-run child (or when a namespace cannot be had) it returns the
 * network the bench runs on; in the parent that re-ran itself it exits with the child's status.
 * `hostOnly` (--host-network) skips the namespace.
 */
export function enterBenchNetwork(hostOnly: boolean): BenchNetwork {
  if (process.env[MARK] === '1') return current('netns');
  if (hostOnly) return current('host', '--host-network');
  if (process.getuid?.() !== 0) return current('host', 'not root: no private network namespace');
  const sysctls = shippedSysctls();
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', `ip link set lo up && sysctl -q -w ${sysctls.join(' ')}`], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status !== 0) return current('host', `unshare -n refused: ${(probe.stderr || probe.error?.message || `exit ${probe.status}`).trim()}`);
  const child = spawnSync(
    'unshare',
    ['-n', 'sh', '-c', `ip link set lo up && sysctl -q -w ${sysctls.join(' ')} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, [MARK]: '1' } },
  );
  process.exit(child.status ?? 1);
}
