/**
 * Verify and telemetry throughput of the reference backend by store, in one run: SQLite (one
 * `serve`), and PostgreSQL with one and with two `serve` replicas on one database. Each replica is
 * a child process (`gatehouse-backend serve`); the loads are signed `POST /v1/verify` requests of
 * `batch` pre-signed v1 hellos each, then signed `POST /v1/gateways/{gw}/telemetry` uploads of
 * 256 new records each (the devices' ok verdicts come from the verify load), `inFlight`
 * outstanding per replica, two replicas addressed by two URLs in turn. Reported per mode and
 * load: hellos or rows stored per second, requests/s, and CPU µs per hello or row of the
 * replicas, of PostgreSQL (the postmaster and its backends) and of this load generator, from
 * /proc, so what bounds each mode can be read off. Also the `store` phase of `npm run bench`.
 *
 * Run: `node --import tsx bench/backend-store.ts [--seconds 8] [--batch 64] [--in-flight 4]`
 * (writes bench/results/backend-store.json). BENCH_BACKEND_CLI=/path/to/backend/cli.ts runs
 * another checkout's backend for the SQLite mode (a before/after comparison).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { openStore } from '../backend/open-store.js';
import { PgStore } from '../backend/pg-store.js';
import { createTestPki, type TestPki } from '../backend/pki.js';
import { ensureSigningKey } from '../backend/signing-key.js';
import { Ed25519Signer, Es256Signer, base64UrlEncode, randomNonce, signGatehouseRequest, signHello } from '../protocol/index.js';
import { TestPostgres } from '../testkit/postgres.js';

const NAME = 'backend.gatehouse.test';
const ORIGIN = `https://${NAME}:8443`;
const GW = 'gw-bench';
const CLK_TCK = 100;

/** One measured load (verify or telemetry) in one mode. */
export interface LoadResult {
  seconds: number;
  /** Hellos verified, or telemetry rows stored. */
  items: number;
  itemsPerSecond: number;
  requestsPerSecond: number;
  errors: number;
  /** CPU µs per item: replicas, PostgreSQL (postmaster and its backends), the load generator. */
  cpuUsPerItem: { replicas: number; postgres: number; generator: number; total: number };
  /** Share of one core each used during the run (1 = one core busy). */
  cores: { replicas: number[]; postgres: number; generator: number };
}

export interface ModeResult {
  mode: string;
  replicas: number;
  verify: LoadResult;
  telemetry: LoadResult;
}

async function procCpuTicks(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** CPU ticks of `root` and its direct children (the postmaster's backends). */
async function treeCpuTicks(root: number): Promise<number> {
  let sum = await procCpuTicks(root);
  for (const d of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      const stat = await readFile(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === root) sum += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return sum;
}

function postmasterPid(pgs: TestPostgres): Promise<number> {
  return readFile(join(pgs.dir, 'data', 'postmaster.pid'), 'utf8').then((t) => Number(t.split('\n')[0]));
}

const CLI = process.env['BENCH_BACKEND_CLI'] ?? fileURLToPath(new URL('../backend/cli.ts', import.meta.url));

async function startServe(dataDir: string, pki: TestPki, store: string | undefined, cli = CLI): Promise<{ proc: ChildProcess; port: number }> {
  const args = ['--import', 'tsx', cli, 'serve', '--data-dir', dataDir, '--cert', pki.server.certPath, '--key', pki.server.keyPath, '--port', '0', '--public-origin', ORIGIN, '--log-level', 'error'];
  if (store !== undefined) args.push('--store', store);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start in 60 s: ${err}`)), 60_000);
    proc.stdout?.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      const m = /listening on https:\/\/[^:]+:([0-9]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`serve exited ${c}: ${err}`));
    });
  });
  return { proc, port };
}

async function stopServe(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const k = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    proc.once('exit', () => {
      clearTimeout(k);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

interface Load {
  session: Ed25519Signer;
  bodies: string[];
}

async function prepare(storeUrl: string, dataDir: string, devices: number, batch: number): Promise<Load> {
  await ensureSigningKey(dataDir);
  const store = await openStore(storeUrl);
  const tpm = Es256Signer.generate(`tpm:${GW}`);
  await store.addGateway({ id: GW, tpmPublicKeyPem: tpm.publicKey.export({ format: 'pem', type: 'spki' }).toString() });
  const signers = Array.from({ length: devices }, (_, i) => Ed25519Signer.generate(`bench-${i}`));
  await store.addDevices(signers.map((s, i) => ({ id: `bench-${i}`, publicKey: s.publicKeyRaw, gateways: [GW] })));
  const session = Ed25519Signer.generate(GW);
  await store.recordSessionKey(GW, session.publicKeyRaw, Math.floor(Date.now() / 1000) + 86_400);
  await store.close();
  // 16 distinct request bodies of `batch` hellos: the backend does not dedupe hellos, only request nonces.
  const bodies: string[] = [];
  for (let b = 0; b < 16; b++) {
    const hellos = [];
    for (let i = 0; i < batch; i++) {
      const s = signers[(b * batch + i) % devices] as Ed25519Signer;
      const hello = await signHello({ type: 'hello', version: 1, dev: s.kid, pn: randomNonce(), gn: randomNonce() }, s);
      hellos.push({ id: `h${i}`, transport: 'mqtt', hello: base64UrlEncode(hello) });
    }
    bodies.push(JSON.stringify({ hellos }));
  }
  return { session, bodies };
}

let nonce = 0;

/** One request the load sends: path, JSON body, and how many hellos or records it carries. */
type Next = () => { path: string; body: string; items: number };

function verifyRequests(load: Load, batch: number): Next {
  let i = 0;
  return () => ({ path: '/v1/verify', body: load.bodies[i++ % load.bodies.length] as string, items: batch });
}

/**
 * Telemetry uploads of `batch` records (at most 256, protocol-v2), each record a new
 * (dev, sid, seq) of a device verified in this mode, on a topic its default policy grants.
 */
function telemetryRequests(devices: number, batch: number): Next {
  const sid = base64UrlEncode(randomNonce().subarray(0, 8));
  const body = base64UrlEncode(new TextEncoder().encode('{"t":21.5,"rh":40}'));
  let seq = 0;
  return () => {
    const records = [];
    for (let k = 0; k < batch; k++, seq++) {
      const dev = `bench-${seq % devices}`;
      records.push({ dev, sid, seq, topic: `devices/${dev}/telemetry`, body, receivedAt: Date.now() });
    }
    return { path: `/v1/gateways/${GW}/telemetry`, body: JSON.stringify({ records }), items: batch };
  };
}

async function drive(ports: number[], pki: TestPki, load: Load, next: Next, inFlight: number, ms: number): Promise<{ items: number; requests: number; errors: number }> {
  const agents = ports.map(() => new Agent({ connect: { ca: pki.ca.certPem, servername: NAME }, connections: inFlight, headersTimeout: 30_000, bodyTimeout: 30_000 }));
  let requests = 0;
  let items = 0;
  let errors = 0;
  let turn = 0;
  const end = Date.now() + ms;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const i = turn++ % ports.length;
      const { path, body, items: n } = next();
      const headers = { 'content-type': 'application/json' };
      const sig = await signGatehouseRequest(
        { method: 'POST', url: `${ORIGIN}${path}`, headers, body: new TextEncoder().encode(body) },
        { keyid: `session:${GW}`, alg: 'ed25519', created: Math.floor(Date.now() / 1000), nonce: `bench-${process.pid}-${++nonce}`, sign: (b) => load.session.sign(b) },
      );
      try {
        const res = await request(`https://127.0.0.1:${ports[i]}${path}`, { method: 'POST', headers: { ...headers, ...sig }, body, dispatcher: agents[i] });
        await res.body.text();
        if (res.statusCode === 200) {
          requests += 1;
          items += n;
        } else errors += 1;
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight * ports.length }, () => worker()));
  await Promise.all(agents.map((a) => a.close()));
  return { items, requests, errors };
}

/** CPU and wall time of one load against the running replicas. */
async function measureLoad(servers: { proc: ChildProcess }[], pm: number | undefined, run: () => Promise<{ items: number; requests: number; errors: number }>): Promise<LoadResult> {
  const rep0 = await Promise.all(servers.map((s) => procCpuTicks(s.proc.pid as number)));
  const pg0 = pm !== undefined ? await treeCpuTicks(pm) : 0;
  const gen0 = process.cpuUsage();
  const t0 = Date.now();
  const r = await run();
  const wall = (Date.now() - t0) / 1000;
  const gen = process.cpuUsage(gen0);
  const rep1 = await Promise.all(servers.map((s) => procCpuTicks(s.proc.pid as number)));
  const pg1 = pm !== undefined ? await treeCpuTicks(pm) : 0;
  const repMs = rep1.map((v, i) => ((v - (rep0[i] ?? 0)) * 1000) / CLK_TCK);
  const pgMs = ((pg1 - pg0) * 1000) / CLK_TCK;
  const genMs = (gen.user + gen.system) / 1000;
  const perItem = (ms: number): number => Math.round((ms * 1000) / Math.max(1, r.items));
  const repTotal = repMs.reduce((x, y) => x + y, 0);
  const cores = (ms: number): number => Math.round((ms / 1000 / wall) * 100) / 100;
  return {
    seconds: Math.round(wall * 10) / 10,
    items: r.items,
    itemsPerSecond: Math.round(r.items / wall),
    requestsPerSecond: Math.round((r.requests / wall) * 10) / 10,
    errors: r.errors,
    cpuUsPerItem: { replicas: perItem(repTotal), postgres: perItem(pgMs), generator: perItem(genMs), total: perItem(repTotal + pgMs + genMs) },
    cores: { replicas: repMs.map(cores), postgres: cores(pgMs), generator: cores(genMs) },
  };
}

async function runMode(
  mode: string,
  o: { pki: TestPki; root: string; pgs?: TestPostgres; replicas: number; seconds: number; batch: number; inFlight: number; devices: number; cli?: string },
): Promise<ModeResult> {
  const dataDir = join(o.root, mode, 'data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  let storeUrl: string | undefined;
  if (o.pgs !== undefined) {
    storeUrl = await o.pgs.createDatabase(mode.replace(/[^a-z0-9]/g, '_'));
    await PgStore.migrate(storeUrl);
  }
  const load = await prepare(storeUrl ?? `sqlite:${join(dataDir, 'registry.sqlite')}`, dataDir, o.devices, o.batch);
  const servers = [];
  try {
    for (let i = 0; i < o.replicas; i++) servers.push(await startServe(dataDir, o.pki, storeUrl, o.cli));
    const ports = servers.map((s) => s.port);
    const pm = o.pgs !== undefined ? await postmasterPid(o.pgs) : undefined;
    // Warm-up (JIT, connections, statements); it also gives every device its ok verdict here, which telemetry needs.
    await drive(ports, o.pki, load, verifyRequests(load, o.batch), o.inFlight, 1500);
    const verify = await measureLoad(servers, pm, () => drive(ports, o.pki, load, verifyRequests(load, o.batch), o.inFlight, o.seconds * 1000));
    const rows = telemetryRequests(o.devices, 256);
    await drive(ports, o.pki, load, rows, o.inFlight, 1000);
    const telemetry = await measureLoad(servers, pm, () => drive(ports, o.pki, load, rows, o.inFlight, o.seconds * 1000));
    return { mode, replicas: o.replicas, verify, telemetry };
  } finally {
    for (const s of servers) await stopServe(s.proc);
  }
}

export async function benchBackendStore(opts: { seconds?: number; batch?: number; inFlight?: number; devices?: number; modes?: string[]; log?: (l: string) => void } = {}): Promise<ModeResult[]> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const root = await mkdtemp(join(tmpdir(), 'gh-bench-store-'));
  const common = { seconds: opts.seconds ?? 8, batch: opts.batch ?? 64, inFlight: opts.inFlight ?? 4, devices: opts.devices ?? 200 };
  const modes = opts.modes ?? ['sqlite', 'postgres-1', 'postgres-2'];
  let pgs: TestPostgres | undefined;
  const results: ModeResult[] = [];
  try {
    const pki = await createTestPki(join(root, 'pki'), { dnsNames: [NAME], ips: ['127.0.0.1'] });
    if (modes.some((m) => m.startsWith('postgres'))) pgs = await TestPostgres.start({ crashSafe: true });
    for (const m of modes) {
      const replicas = m === 'postgres-2' ? 2 : 1;
      const r = await runMode(m, { ...common, pki, root, replicas, ...(m.startsWith('postgres') && pgs ? { pgs } : {}) });
      for (const [what, l] of [['hellos', r.verify], ['rows', r.telemetry]] as const) {
        log(
          `${m.padEnd(11)} ${String(l.itemsPerSecond).padStart(6)} ${what}/s ${String(l.requestsPerSecond).padStart(6)} req/s  errors ${l.errors}  ` +
            `CPU µs per ${what === 'hellos' ? 'hello' : 'row'}: replicas ${l.cpuUsPerItem.replicas}, postgres ${l.cpuUsPerItem.postgres}, generator ${l.cpuUsPerItem.generator}  ` +
            `cores: replicas ${l.cores.replicas.join('+')}, postgres ${l.cores.postgres}, generator ${l.cores.generator}`,
        );
      }
      results.push(r);
    }
  } finally {
    await pgs?.stop();
    await rm(root, { recursive: true, force: true });
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, batch: { type: 'string' }, 'in-flight': { type: 'string' }, modes: { type: 'string' }, out: { type: 'string' } } });
  const results = await benchBackendStore({
    ...(values.seconds !== undefined ? { seconds: Number(values.seconds) } : {}),
    ...(values.batch !== undefined ? { batch: Number(values.batch) } : {}),
    ...(values['in-flight'] !== undefined ? { inFlight: Number(values['in-flight']) } : {}),
    ...(values.modes !== undefined ? { modes: values.modes.split(',') } : {}),
  });
  const out = values.out ?? fileURLToPath(new URL('./results/backend-store.json', import.meta.url));
  await mkdir(join(out, '..'), { recursive: true });
  await writeFile(out, JSON.stringify({ at: new Date().toISOString(), cli: CLI, results }, null, 2) + '\n');
}
