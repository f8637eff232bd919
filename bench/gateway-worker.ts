/**
 * The daemon under test, in its own process (child_process.fork): the composition root exactly
 * as `gatehouse run` builds it (config file → loadConfig → Gateway), with a file logger, started
 * with the node flags of the systemd unit's ExecStart (bench/harness.ts). The bench reads its
 * memory from /proc and its counters (TPM signatures, backend batches) over IPC.
 */
import { createWriteStream } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { loadConfig } from '../daemon/config/load.js';
import { Gateway } from '../daemon/gateway.js';
import { createRootLogger } from '../common/log/logger.js';

export type GatewayWorkerCommand = { op: 'stats' } | { op: 'stop' } | { op: 'heap'; file: string };

export interface GatewayWorkerStats {
  op: 'stats';
  tpmSignatures: number;
  batches: number;
  hellos: number;
  offlineWelcomes: number;
  heapUsedMb: number;
  rssMb: number;
}

const [configFile, logFile] = process.argv.slice(2);
if (configFile === undefined || logFile === undefined) throw new Error('usage: gateway-worker CONFIG LOGFILE');
const config = await loadConfig(configFile);
const stream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
const logger = createRootLogger({ level: config.log.level, format: config.log.format, env: {}, stream });
const gateway = new Gateway({ config, configFile, logger, drainTimeoutMs: 3000 });
await gateway.start();
process.send?.({ op: 'ready', port: gateway.mqttAddresses().tcp?.port ?? 0 });

process.on('message', (cmd: GatewayWorkerCommand) => {
  if (cmd.op === 'stats') {
    const s = gateway.sessionStats();
    const b = gateway.backendStats();
    const m = process.memoryUsage();
    const out: GatewayWorkerStats = {
      op: 'stats',
      tpmSignatures: s?.tpmSignatures ?? 0,
      batches: b?.batches ?? 0,
      hellos: b?.hellos ?? 0,
      offlineWelcomes: b?.offlineWelcomes ?? 0,
      heapUsedMb: m.heapUsed / 2 ** 20,
      rssMb: m.rss / 2 ** 20,
    };
    process.send?.(out);
  } else if (cmd.op === 'heap') {
    // For memory investigations (docs/performance.md): a V8 heap snapshot of the running daemon.
    process.send?.({ op: 'heap', file: writeHeapSnapshot(cmd.file) });
  } else if (cmd.op === 'stop') {
    void gateway.stop().finally(() => stream.end(() => process.exit(0)));
  }
});
process.on('disconnect', () => void gateway.stop().finally(() => process.exit(0)));
