/**
 * The demo's data-plane round (protocol-v2 "Frames", "Commands"): every established simulated
 * peripheral sends a few `pub` frames and waits for the receipts that settle them (the gateway
 * receipts a pub only once it is committed to its queue); one command goes down to the first
 * peripheral, which acts on it and acknowledges it; then the demo asks the backend's own store how
 * many of the frames it holds and whether the command is closed, waiting a bounded time for the
 * gateway's uploader to drain.
 */
import type { BackendStore } from '../backend/store.js';
import type { RunningBackend } from '../backend/server.js';
import type { MqttReferencePeripheralV2 } from '../peripherals/reference/mqtt-peripheral-v2.js';

/** Frames each simulated peripheral sends. */
export const FRAMES_PER_PERIPHERAL = 3;
/** How long the backend may take to hold every receipted frame and the ack. */
export const DRAIN_DEADLINE_MS = 15_000;

export interface DataRoundResult {
  sent: number;
  receipted: number;
  /** Frames of these peripherals the backend's store holds. */
  stored: number;
  /** The command: to whom, and whether its ack reached the backend (`done` there); absent when none was sent. */
  command?: { dev: string; cid: number; acked: boolean } | { skipped: string };
  /** Why the round stopped short, if it did. */
  error?: string;
}

/** Sends the frames and waits for their receipts; the count settled. */
async function publish(p: MqttReferencePeripheralV2): Promise<{ sent: number; receipted: number }> {
  let sent = 0;
  let receipted = 0;
  for (let i = 0; i < FRAMES_PER_PERIPHERAL; i++) {
    await p.pub(`devices/${p.dev}/telemetry`, new TextEncoder().encode(JSON.stringify({ n: i, t: 20 + i })));
    sent += 1;
  }
  while (receipted < sent) {
    const r = await p.nextReceipt();
    receipted += r.settled.length;
    if (r.denied.length > 0 || r.resend.length > 0) break;
  }
  return { sent, receipted };
}

/** Waits (bounded) for the command, acts on it and sends the ack. */
async function answerCommand(p: MqttReferencePeripheralV2, cid: number): Promise<void> {
  for (;;) {
    const e = await p.nextEvent();
    if (e.kind === 'command' && e.command.cid === cid) {
      await p.send(await e.answer('done'));
      return;
    }
  }
}

async function until(cond: () => Promise<boolean>, deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function dataRound(o: { peripherals: MqttReferencePeripheralV2[]; registry: BackendStore; backend: RunningBackend | undefined }): Promise<DataRoundResult> {
  const out: DataRoundResult = { sent: 0, receipted: 0, stored: 0 };
  const devs = new Set(o.peripherals.map((p) => p.dev));
  const storedNow = async (): Promise<number> => (await o.registry.telemetryLast(Math.max(1, devs.size * FRAMES_PER_PERIPHERAL * 2))).filter((r) => devs.has(r.dev)).length;
  try {
    const counts = await Promise.all(o.peripherals.map((p) => publish(p)));
    for (const c of counts) {
      out.sent += c.sent;
      out.receipted += c.receipted;
    }
    const first = o.peripherals[0];
    if (first !== undefined && o.backend === undefined) out.command = { skipped: 'the backend runs as its own process (try `gatehouse-backend command send`)' };
    else if (first !== undefined && o.backend !== undefined) {
      const issued = await o.backend.issueCommand({ dev: first.dev, topic: `devices/${first.dev}/cmd/blink`, body: new TextEncoder().encode('blink'), ttlSeconds: 300 });
      await answerCommand(first, issued.cid);
      const acked = await until(async () => (await o.registry.listCommands(first.dev)).some((c) => c.cid === issued.cid && c.status === 'done'), DRAIN_DEADLINE_MS);
      out.command = { dev: first.dev, cid: issued.cid, acked };
    }
  } catch (err) {
    out.error = err instanceof Error ? err.message : String(err);
  }
  await until(async () => (out.stored = await storedNow()) >= out.receipted, DRAIN_DEADLINE_MS);
  return out;
}
