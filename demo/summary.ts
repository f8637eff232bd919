/**
 * The demo's summary: what happened to each simulated peripheral, and how to look at the running
 * system from another terminal.
 */
import { join } from 'node:path';
import type { BackendClient } from '../daemon/backend-client/client.js';
import type { SessionManager } from '../daemon/backend-client/session.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import type { MqttAuthResultV2 } from '../peripherals/reference/mqtt-peripheral-v2.js';
import type { BackendProcess } from './backend-process.js';
import type { DataRoundResult } from './data-round.js';

/** One simulated peripheral's outcome and its time from connect to verified welcome. */
export interface AuthOutcome {
  dev: string;
  result: MqttAuthResultV2 | Error;
  ms: number;
}

export interface SummaryContext {
  say(line: string): void;
  results: AuthOutcome[];
  /** The data-plane round: frames sent, receipted, stored at the backend; the command. */
  data: DataRoundResult;
  config: GatehouseConfig;
  mqttUrl: string;
  outsideKey: string;
  session: ReturnType<SessionManager['stats']> | undefined;
  backend: ReturnType<BackendClient['stats']> | undefined;
  endpoint: { kid: string; publicKeyRaw: Uint8Array } | undefined;
  backendProcess: BackendProcess | undefined;
  /** The demo's state directory. */
  dir: string;
}

/**
 * Prints the summary; true when every peripheral was welcomed and verified its welcome, every
 * frame sent was receipted and every receipted frame reached the backend, and the command (when
 * one was sent) was acknowledged there.
 */
export function printSummary(c: SummaryContext): boolean {
  const { say, results, config, mqttUrl, outsideKey } = c;
  const welcomed = results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'established');
  const byReason = new Map<string, number>();
  for (const r of results) {
    if (!(r.result instanceof Error) && r.result.kind === 'established') continue;
    const why = r.result instanceof Error ? `error: ${r.result.message}` : r.result.kind === 'rejected' ? `rejected: ${r.result.reason}` : `welcome refused: ${r.result.code}`;
    byReason.set(why, (byReason.get(why) ?? 0) + 1);
  }
  const ms = welcomed.map((r) => r.ms).sort((a, b) => a - b);
  const pct = (p: number): string => (ms.length === 0 ? '-' : `${ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))]?.toFixed(1)} ms`);
  const session = c.session;
  const backendStats = c.backend;
  say('');
  say('Summary');
  say(`  welcomed, and the welcome verified by the peripheral   ${welcomed.length}/${results.length}`);
  for (const [why, n] of byReason) say(`  ${why.padEnd(54)} ${n}`);
  say(`  latency, connect to verified welcome                   p50 ${pct(50)}, p95 ${pct(95)}, max ${pct(100)}`);
  say(`  backend verify requests (hellos are batched)           ${backendStats?.batches ?? 0} for ${backendStats?.hellos ?? 0} hellos`);
  say(`  TPM signatures (the session key signs the hot path)    ${session?.tpmSignatures ?? 0}`);
  say(`  backend retries, offline welcomes, unavailable answers ${backendStats?.retries ?? 0}, ${backendStats?.offlineWelcomes ?? 0}, ${backendStats?.unavailable ?? 0}`);
  const d = c.data;
  say(`  ${'frames sent, receipted, stored at the backend'.padEnd(55)}${d.sent}, ${d.receipted}, ${d.stored}`);
  const cmd = d.command;
  const cmdLine = cmd === undefined ? 'none (no peripheral welcomed)' : 'skipped' in cmd ? `skipped: ${cmd.skipped}` : `cid ${cmd.cid} to ${cmd.dev}: ${cmd.acked ? 'acked (done at the backend)' : 'NOT acked'}`;
  say(`  ${'command down, acked'.padEnd(55)}${cmdLine}`);
  if (d.error !== undefined) say(`  data round stopped: ${d.error}`);
  const dataOk = d.error === undefined && d.receipted === d.sent && d.stored >= d.receipted && (cmd === undefined || 'skipped' in cmd || cmd.acked);
  say('');
  say('Look at it while it runs (another terminal):');
  say(`  node dist/cli/gatehouse.js status --socket ${config.status.socketPath}`);
  say(`  node dist/cli/gatehouse.js peripherals --socket ${config.status.socketPath}`);
  say(`  node dist/cli/gatehouse.js events --follow --socket ${config.status.socketPath}`);
  say(`  curl --unix-socket ${config.status.socketPath} http://localhost/metrics`);
  const kid = c.endpoint?.kid ?? '';
  const pk = Buffer.from(c.endpoint?.publicKeyRaw ?? new Uint8Array()).toString('hex');
  say('An outside client, as registered device outside-1 (one MQTT connection for the whole exchange):');
  say(`  node dist/cli/gatehouse.js peripheral mqtt --key ${outsideKey} --url ${mqttUrl} --backend-kid ${kid} --backend-key ${pk}`);
  say(`  mosquitto_sub -h 127.0.0.1 -p ${mqttUrl.split(':').pop() ?? ''} -t '#'     (refused: peripherals must authenticate first; see docs/mqtt.md)`);
  const proc = c.backendProcess;
  if (proc !== undefined) {
    say(`Try a backend outage: the backend runs as its own process, pid ${proc.pid} (log ${join(c.dir, 'backend.log')}):`);
    say(`  stop it:         kill ${proc.pid}`);
    say(`  start it again:  ${proc.serveCommand()}`);
    say('  Meanwhile a peripheral welcomed before (outside-1 above, once it has been welcomed online) is welcomed');
    say('  offline under its cached lease; `status` shows it, and so does the summary printed when the demo stops.');
  }
  return welcomed.length === results.length && dataOk;
}
