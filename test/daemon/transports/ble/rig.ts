/**
 * Test rig of the BLE suites: real noble (built with `with-bindings`) over the emulated radio,
 * the real pipeline, and FakeVerifier standing in for the backend. Not a test file.
 */
import { Ed25519Signer } from '../../../../protocol/index.js';
import { Pipeline, type PipelineOptions } from '../../../../daemon/pipeline/pipeline.js';
import type { AuthPipeline } from '../../../../daemon/pipeline/types.js';
import { NobleCentral } from '../../../../daemon/transports/ble/noble-adapter.js';
import { BleTransport, type BleExchangeEvent, type BleTransportOptions } from '../../../../daemon/transports/ble/transport.js';
import { EmulatedNobleBindings, type EmulatedBindingsOptions } from '../../../../peripherals/reference/ble-emulated-bindings.js';
import {
  ReferenceBlePeripheral,
  type BlePeripheralMisbehaviour,
  type BlePeripheralResult,
} from '../../../../peripherals/reference/ble-peripheral.js';
import { FakeSessionProvider, FakeVerifier } from '../../../fakes/FakeVerifier.js';
import { recordExchanges } from '../../../../testkit/ble-exchanges.js';

export const GW = 'gw-ble-test';

import { waitForEmitter } from '../../../../testkit/wait.js';

export { waitForEmitter, waitForEvent } from '../../../../testkit/wait.js';

export interface Rig {
  radio: EmulatedNobleBindings;
  central: NobleCentral;
  backend: FakeVerifier;
  pipeline: Pipeline;
  transport: BleTransport;
  exchanges: BleExchangeEvent[];
  /** A registered device as a reference peripheral on the radio. */
  addPeripheral(n: number, options?: { mtu?: number; misbehave?: BlePeripheralMisbehaviour; register?: boolean }): ReferenceBlePeripheral;
  /** The next exchange event for `address`. */
  exchangeOf(address: string, ms?: number): Promise<BleExchangeEvent>;
  stop(): Promise<void>;
}

/** Record the length of every write the gateway makes on the emulated radio (its chunk sizes). */
export function recordWriteLengths(radio: EmulatedNobleBindings): number[] {
  const lengths: number[] = [];
  const write = radio.write.bind(radio);
  radio.write = (id, s, c, data, wr) => {
    lengths.push(data.length);
    write(id, s, c, data, wr);
  };
  return lengths;
}

export function addressOf(n: number): string {
  return `c0:de:00:00:00:${n.toString(16).padStart(2, '0')}`;
}

/** The first result of a peripheral, or fail after `ms`. */
export function resultOf(p: ReferenceBlePeripheral, ms = 10_000): Promise<BlePeripheralResult> {
  const first = p.results[0];
  if (first) return Promise.resolve(first);
  return waitForEmitter<[BlePeripheralResult]>(
    p,
    'result',
    () => true,
    `result of ${p.dev}`,
    ms,
  ).then(([r]) => r);
}

export async function makeRig(
  options: {
    radio?: EmulatedBindingsOptions;
    transport?: Partial<BleTransportOptions>;
    pipeline?: Partial<PipelineOptions>;
    /** Put something between the transport and the real pipeline (slow calls, counting). */
    wrapPipeline?: (pipeline: Pipeline) => AuthPipeline;
    operationTimeoutMs?: number;
  } = {},
): Promise<Rig> {
  const radio = new EmulatedNobleBindings({ advertisingIntervalMs: 20, ...options.radio });
  const central = new NobleCentral({ bindings: radio, operationTimeoutMs: options.operationTimeoutMs ?? 3_000 });
  const backend = new FakeVerifier(GW);
  const sessions = new FakeSessionProvider(await backend.makeSession());
  const pipeline = new Pipeline({ gw: GW, verifier: backend, sessions, ...options.pipeline });
  const transport = new BleTransport({
    central,
    pipeline: options.wrapPipeline ? options.wrapPipeline(pipeline) : pipeline,
    exchangeTimeoutMs: 8_000,
    denyList: { baseMs: 60_000 },
    ...options.transport,
  });
  const record = recordExchanges(transport);
  return {
    radio,
    central,
    backend,
    pipeline,
    transport,
    exchanges: record.exchanges,
    addPeripheral(n, o = {}) {
      const dev = `dev-${n}`;
      const signer = o.register === false ? Ed25519Signer.generate(dev) : backend.addDevice(dev);
      const p = new ReferenceBlePeripheral({
        address: addressOf(n),
        dev,
        signer,
        backendKeys: backend.backendKeys(),
        ...(o.mtu === undefined ? {} : { mtu: o.mtu }),
        ...(o.misbehave === undefined ? {} : { misbehave: o.misbehave }),
      });
      radio.addPeripheral(p);
      return p;
    },
    exchangeOf: (address, ms = 10_000) => record.exchangeOf(address, ms),
    async stop() {
      await transport.stop();
      pipeline.close();
    },
  };
}
