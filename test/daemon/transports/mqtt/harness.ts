/**
 * Test harness for the MQTT transport: a real aedes broker on loopback port 0, the real
 * pipeline, and (here) the FakeVerifier standing in for the backend client. Raw MQTT helpers for
 * hostile clients. Every wait has a timeout; nothing sleeps.
 */
import type { MqttClient } from 'mqtt';
import mqtt from 'mqtt';
import winston from 'winston';
import { Ed25519Signer } from '../../../../protocol/index.js';
import { Pipeline, type PipelineOptions } from '../../../../daemon/pipeline/pipeline.js';
import type { HelloVerifier, SessionProvider } from '../../../../daemon/pipeline/types.js';
import { MqttTransport, type MqttTransportOptions } from '../../../../daemon/transports/mqtt/transport.js';
import { MQTT_DEFAULTS } from '../../../../testkit/component-defaults.js';
import { MqttReferencePeripheral } from '../../../../peripherals/reference/mqtt-peripheral.js';
import { ReferencePeripheral } from '../../../../peripherals/reference/peripheral.js';
import { FakeRevocationSource, FakeSessionProvider, FakeVerifier } from '../../../fakes/FakeVerifier.js';

export const GW = 'gw-mqtt-test';

export interface Harness {
  transport: MqttTransport;
  pipeline: Pipeline;
  revocations: FakeRevocationSource;
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Starts pipeline + transport around the given verifier and sessions. */
export async function startHarness(
  verifier: HelloVerifier,
  sessions: SessionProvider,
  opts: { pipeline?: Partial<PipelineOptions>; transport?: Partial<MqttTransportOptions>; gw?: string } = {},
): Promise<Harness> {
  const pipeline = new Pipeline({ gw: opts.gw ?? GW, verifier, sessions, ...opts.pipeline });
  const revocations = new FakeRevocationSource();
  const logger = process.env.GH_TEST_LOG === '1' ? winston.createLogger({ level: 'debug', transports: [new winston.transports.Console()] }) : undefined;
  const transport = new MqttTransport({ pipeline, revocations, ...MQTT_DEFAULTS, tcp: { host: '127.0.0.1', port: 0 }, ...(logger ? { logger } : {}), ...opts.transport });
  await transport.start();
  const addresses = transport.addresses();
  const port = addresses.tcp?.port ?? addresses.tls?.port ?? 0;
  return {
    transport,
    pipeline,
    revocations,
    port,
    url: addresses.tcp !== undefined ? `mqtt://127.0.0.1:${port}` : `mqtts://127.0.0.1:${port}`,
    stop: async () => {
      pipeline.close();
      await transport.stop();
    },
  };
}

/** FakeVerifier + session: the backend stand-in for tests that do not need the real one. */
export async function fakeBackend(): Promise<{ backend: FakeVerifier; sessions: FakeSessionProvider }> {
  const backend = new FakeVerifier(GW);
  return { backend, sessions: new FakeSessionProvider(await backend.makeSession()) };
}

/** A reference peripheral over MQTT for `dev` with key `signer`. */
export function peripheralFor(url: string, signer: Ed25519Signer, backendKeys: Map<string, Uint8Array>, extra: { clientId?: string; ca?: string } = {}): MqttReferencePeripheral {
  const peripheral = new ReferencePeripheral({ dev: signer.kid, signer, backendKeys });
  return new MqttReferencePeripheral({ url, peripheral, timeoutMs: 10_000, ...extra });
}

/** Resolves with `what` or rejects after `ms` (every wait in these tests is bounded). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** An mqtt.js client (MQTT 3.1.1, no reconnect) connected, or the CONNACK refusal as an error. */
export async function rawClient(url: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30, clean: true, ...options });
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
        client.once('close', () => reject(new Error('closed before CONNACK')));
      }),
      10_000,
      'CONNACK',
    );
  } catch (err) {
    client.end(true);
    throw err;
  }
  return client;
}

/** Resolves when the client's connection closes (bounded). */
export function closed(client: MqttClient, ms = 10_000): Promise<void> {
  if (!client.connected && client.disconnected) return Promise.resolve();
  return within(new Promise<void>((resolve) => client.once('close', () => resolve())), ms, 'connection close');
}

/** The next message on `topic` (bounded). */
export function nextMessage(client: MqttClient, topic: string, ms = 10_000, accept: (payload: Uint8Array) => boolean = () => true): Promise<Buffer> {
  return within(
    new Promise<Buffer>((resolve) => {
      const on = (t: string, payload: Buffer): void => {
        if (t !== topic || !accept(new Uint8Array(payload))) return;
        client.off('message', on);
        resolve(payload);
      };
      client.on('message', on);
    }),
    ms,
    `message on ${topic}`,
  );
}
