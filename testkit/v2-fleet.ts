/**
 * Protocol-v2 devices for the data-plane fault suites: each is the reference v2 peripheral on its
 * own mqtt.js connection (a real v2 session through the gateway's broker), streaming telemetry one
 * frame at a time and remembering which frames a receipt settled, and when. A frame answered
 * `busy` keeps its content: the device waits the receipt's `retry` and sends it again in a new
 * frame, as protocol-v2 asks. Also: what the reference backend stored, read back from its store.
 */
import { MemoryCommandStore } from '../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2, type PeripheralSessionV2 } from '../peripherals/reference/session-v2.js';
import type { BackendStore } from '../backend/store.js';
import type { Device, FaultEnv } from './faults.js';

/** `dev/sid(hex)/seq`: what names a frame, at the gateway and at the backend. */
export function frameKey(dev: string, sid: Uint8Array, seq: number): string {
  return `${dev}/${Buffer.from(sid).toString('hex')}/${seq}`;
}

/** A device's frame a receipt settled. */
export interface SettledFrame {
  key: string;
  body: string;
  /** Unix ms the receipt arrived. */
  at: number;
}

export class StreamingDevice {
  /** Every frame a receipt settled, in order. */
  readonly settled: SettledFrame[] = [];
  /** Receipts that listed a frame of this device as busy. */
  busyReceipts = 0;

  private constructor(
    readonly dev: string,
    readonly link: MqttReferencePeripheralV2,
    readonly session: PeripheralSessionV2,
  ) {}

  get sid(): Uint8Array {
    return this.session.sid;
  }

  /** Connects `d` to the gateway's broker at `port` and establishes a v2 session (throws otherwise). */
  static async open(env: FaultEnv, d: Device, port: number, opened: MqttReferencePeripheralV2[], timeoutMs = 30_000): Promise<StreamingDevice> {
    const backendKeys = new Map([[env.backend.kid, env.backend.publicKeyRaw]]);
    const peripheral = new ReferencePeripheralV2({ dev: d.dev, signer: d.signer, devicePublicKey: d.signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() });
    const link = new MqttReferencePeripheralV2({ url: `mqtt://127.0.0.1:${port}`, peripheral, timeoutMs });
    // Handed to the caller at once, so its after hook closes it even when the session fails.
    opened.push(link);
    await link.connect();
    const r = await link.authenticate();
    if (r.kind !== 'established') throw new Error(`${d.dev}: no v2 session: ${JSON.stringify(r)}`);
    return new StreamingDevice(d.dev, link, r.session);
  }

  /**
   * Sends `body` on `devices/{dev}/t` until a receipt settles it: a busy answer keeps the content,
   * which goes again in a new frame once the receipt's `retry` has passed. A denied frame throws.
   */
  async send(body: string, topic = `devices/${this.dev}/t`): Promise<void> {
    for (;;) {
      await this.link.pub(topic, new TextEncoder().encode(body));
      const seq = Math.max(...this.session.unsettled);
      const r = await this.link.nextReceipt();
      if (r.denied.length > 0) throw new Error(`${this.dev}: frame ${seq} denied`);
      if (r.settled.includes(seq)) {
        this.settled.push({ key: frameKey(this.dev, this.sid, seq), body, at: Date.now() });
        return;
      }
      if (r.resend.length === 0) throw new Error(`${this.dev}: a receipt neither settled nor returned frame ${seq}`);
      this.busyReceipts += 1;
      // The device's own rule (protocol-v2 "busy"): no pub before retry has passed.
      await new Promise((res) => setTimeout(res, (r.busyRetrySeconds ?? 1) * 1000 + 20));
    }
  }

  /** Streams `{dev}#{n}` bodies, one frame every `periodMs` (its telemetry interval) until `stop()` holds. */
  async stream(stop: () => boolean, periodMs: number): Promise<void> {
    for (let n = 0; !stop(); n += 1) {
      await this.send(`${this.dev}#${n}`);
      if (!stop()) await new Promise((res) => setTimeout(res, periodMs));
    }
  }

}

/** Every telemetry row the backend stored, as frame key → bodies stored under it (one each, if stored once). */
export async function storedFrames(store: BackendStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (let after = 0; ; ) {
    const page = await store.telemetryAfter(after, 5000);
    if (page.length === 0) return out;
    for (const r of page) {
      const key = frameKey(r.dev, r.sid, r.seq);
      out.set(key, [...(out.get(key) ?? []), new TextDecoder().decode(r.body)]);
    }
    after = page[page.length - 1]?.id ?? after;
  }
}

/** The moment the backend went away: what its last commit stored, and when. */
export interface Outage {
  accepted: number;
  duplicates: number;
  /** Unix ms the backend began to stop. */
  at: number;
  /** Resolves once it has stopped. */
  stopped: Promise<void>;
}

/**
 * Stops the backend right after its next telemetry commit and before it answers (a crash at the
 * worst moment): the gateway never hears that this batch was stored, keeps it, and sends it again
 * once the backend is back, which the backend answers as duplicates.
 */
export function stopBackendAfterNextStore(env: FaultEnv): Promise<Outage> {
  const backend = env.backend;
  const store = backend.store;
  const original = store.storeTelemetry.bind(store);
  return new Promise((resolve) => {
    store.storeTelemetry = async (gw, records) => {
      const out = await original(gw, records);
      store.storeTelemetry = original;
      resolve({ ...out, at: Date.now(), stopped: backend.close() });
      return out;
    };
  });
}
