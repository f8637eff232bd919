/**
 * `npm run fuzz`: mutation fuzzing of the decoders and the BLE reassembler (>= 1,000,000 inputs,
 * 0 crashes allowed), then a raw-TCP MQTT fuzzer against the daemon's embedded broker while a
 * legitimate peripheral authenticates every few seconds. Prints the counts, writes
 * bench/results/fuzz.json, exits 1 on any crash, lost legitimate peripheral or dead broker.
 *
 * Options: --inputs N (decoder + reassembler inputs, default 1,000,000), --seed N,
 * --mqtt-seconds N (default 60), --skip-mqtt.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Ed25519Signer } from '../protocol/index.js';
import { FaultPeripheral } from '../testkit/faults.js';
import { fuzzDecoders, fuzzReassembler, loadSeeds, Prng } from './fuzz-decoders.js';
import { hostileCases, sendCase, slowloris } from './fuzz-mqtt.js';
import { BenchEnv, Daemon } from './harness.js';

const { values } = parseArgs({ options: { inputs: { type: 'string' }, seed: { type: 'string' }, 'mqtt-seconds': { type: 'string' }, 'skip-mqtt': { type: 'boolean' } } });
const INPUTS = Number(values.inputs ?? 1_000_000);
const SEED = Number(values.seed ?? Date.now() % 2 ** 31);
const MQTT_SECONDS = Number(values['mqtt-seconds'] ?? 60);
const root = fileURLToPath(new URL('..', import.meta.url));
const log = (s: string): void => console.log(s);
let failed = false;

log(`Gatehouse fuzz — seed ${SEED}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const seeds = [...loadSeeds(join(root, 'test/vectors/protocol-v1.json')), ...loadSeeds(join(root, 'test/vectors/protocol-v2.json'))];
const r = new Prng(SEED);
let t = performance.now();
const decoders = fuzzDecoders(seeds, Math.round(INPUTS * 0.6), r);
const decoderSec = (performance.now() - t) / 1000;
log(`decoders (v1: decodeUpMessage, parseHello, decodeChallengeRequest; v2: decodeUpMessageV2, parseHelloV2, decodeChallengeRequestV2, parseFrameEnvelope, decodeFramePayload): ${decoders.inputs} inputs from ${seeds.length} vector seeds in ${decoderSec.toFixed(1)} s: ${decoders.decoded} decodes, ${decoders.typedErrors} typed ProtocolErrors, ${decoders.crashCount} crashes`);
t = performance.now();
const reasm = fuzzReassembler(seeds, INPUTS - decoders.inputs, r);
const reasmSec = (performance.now() - t) / 1000;
log(`BLE reassembler: ${reasm.inputs} chunk sequences in ${reasmSec.toFixed(1)} s: ${reasm.decoded} accepted, ${reasm.typedErrors} typed BleFrameErrors, ${reasm.crashCount} crashes, ${reasm.roundTripFailures} intact sequences not reassembled exactly`);
for (const c of [...decoders.crashes, ...reasm.crashes]) log(`  CRASH ${c.target}: ${c.error} on ${c.input}`);
if (decoders.crashCount + reasm.crashCount + reasm.roundTripFailures > 0) failed = true;

let mqtt: Record<string, unknown> = { skipped: true };
if (values['skip-mqtt'] !== true) {
  log(`MQTT fuzzer: ${MQTT_SECONDS} s against the daemon's broker (compiling the daemon first)`);
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });
  const env = await BenchEnv.create(await mkdtemp(join(tmpdir(), 'gh-fuzz-')), 4);
  const { file, log: logFile } = await env.writeConfig('fuzz', { logLevel: 'warn' });
  const daemon = await Daemon.start('gateway-worker.js', [file, logFile]);
  try {
    await new Promise((res) => setTimeout(res, 1000));
    const idleRss = daemon.memory().rssMb;
    let maxRss = idleRss;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, daemon.memory().rssMb)), 500);
    const d = env.devices[0] as (typeof env.devices)[number];
    const legit = new FaultPeripheral({ dev: d.dev, signer: Ed25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'base64')), d.dev) }, env.backend);
    const checks = { attempted: 0, welcomed: 0, failures: [] as string[] };
    const check = async (): Promise<void> => {
      checks.attempted += 1;
      try {
        await legit.connect(daemon.port, 10_000);
        const o = await legit.authenticate(10_000);
        if (o.kind === 'welcome') checks.welcomed += 1;
        else checks.failures.push(JSON.stringify(o));
      } catch (err) {
        checks.failures.push((err as Error).message);
      } finally {
        legit.close();
      }
    };
    const end = performance.now() + MQTT_SECONDS * 1000;
    const outcomes: Record<string, number> = {};
    let connections = 0;
    let packets = 0;
    // 50 slowloris connections: one CONNECT byte a second; the broker must drop them (connectTimeoutSec).
    const slow = Promise.all(Array.from({ length: 50 }, () => slowloris(daemon.port, 1000, Math.min(60_000, MQTT_SECONDS * 1000))));
    const checker = (async () => {
      while (performance.now() < end) {
        await check();
        await new Promise((res) => setTimeout(res, 2000));
      }
    })();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (performance.now() < end) {
          for (const [name, pkts] of hostileCases(r)) {
            if (performance.now() >= end) break;
            connections += 1;
            packets += pkts.length;
            const o = await sendCase(daemon.port, pkts, 300);
            outcomes[`${name}: ${o}`] = (outcomes[`${name}: ${o}`] ?? 0) + 1;
          }
        }
      }),
    );
    await checker;
    const slowResults = await slow;
    await check();
    clearInterval(sampler);
    const alive = daemon.child.exitCode === null && daemon.child.signalCode === null;
    const slowDropped = slowResults.filter((s) => s.closedByBroker);
    mqtt = {
      seconds: MQTT_SECONDS,
      hostileConnections: connections,
      hostilePackets: packets,
      outcomes,
      slowloris: { opened: slowResults.length, droppedByBroker: slowDropped.length, maxHeldMs: Math.round(Math.max(0, ...slowDropped.map((s) => s.heldMs))) },
      legitimate: checks,
      daemonAlive: alive,
      rssMb: { idle: Math.round(idleRss), max: Math.round(maxRss) },
    };
    log(`  ${connections} hostile connections, ${packets} packets; slowloris dropped by the broker ${slowDropped.length}/${slowResults.length} (held at most ${Math.round(Math.max(0, ...slowDropped.map((s) => s.heldMs)) / 1000)} s)`);
    log(`  legitimate peripheral welcomed ${checks.welcomed}/${checks.attempted}; daemon ${alive ? 'alive' : 'DEAD'}; RSS idle ${Math.round(idleRss)} MB, max ${Math.round(maxRss)} MB`);
    const kept = Object.entries(outcomes).filter(([k]) => k.endsWith(': open'));
    if (kept.length > 0) log(`  cases the broker left open after 300 ms (closed later by its timeouts): ${kept.map(([k, v]) => `${k} x${v}`).join('; ')}`);
    if (!alive || checks.welcomed !== checks.attempted || maxRss > idleRss + 150) failed = true;
  } finally {
    await daemon.stop();
    await env.dispose();
  }
}

const out = { at: new Date().toISOString(), seed: SEED, load: loadavg(), decoders, reassembler: reasm, mqtt };
await writeFile(join(root, 'bench/results/fuzz.json'), `${JSON.stringify(out, null, 2)}\n`);
log(`${failed ? 'FAILED' : 'OK'}: wrote bench/results/fuzz.json`);
process.exitCode = failed ? 1 : 0;
