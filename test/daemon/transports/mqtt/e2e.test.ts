/**
 * End to end over real MQTT on loopback, with the real parts: the reference backend over HTTPS
 * (test/helpers/backend.ts), the project's backend client and session manager, the gateway key
 * in a real swtpm through the TPM key store, the pipeline, the aedes transport (TCP and TLS with
 * a certificate made now), the reference peripheral on mqtt.js, and mosquitto_pub/mosquitto_sub
 * as a client we did not write.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCert } from '../../../../backend/pki.js';
import { checkWelcome, decodeChallenge, decodeDownMessage, encodeChallengeRequest, parseGatewayCredential, parseReject, randomNonce, sha256, signHello, type Ed25519Signer } from '../../../../protocol/index.js';
import { startTestBackend, type TestBackend } from '../../../../testkit/backend.js';
import { backendHttpFor, backendKeysOf, startBackendSide, startTpmGatewayKey, type GatewayBackendSide, type TpmGatewayKey } from '../../../../testkit/gateway-backend.js';
import { nextMessage, peripheralFor, rawClient, startHarness, within, type Harness } from './harness.js';

const GW = 'gw-e2e-1';

/** A child process that is always reaped: killed if still running, its exit awaited (bounded). */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  stdout = Buffer.alloc(0);
  stderr = '';

  constructor(cmd: string, args: string[], stdoutFd?: number) {
    this.proc = spawn(cmd, args, { stdio: ['pipe', stdoutFd ?? 'pipe', 'pipe'] });
    this.proc.stdout?.on('data', (d: Buffer) => {
      this.stdout = Buffer.concat([this.stdout, d]);
      this.proc.emit('gh-stdout');
    });
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  /** Resolves with the next complete stdout line (mosquitto_sub -F %x prints one per message). */
  async line(index: number, ms = 10_000): Promise<string> {
    return within(
      new Promise<string>((resolve) => {
        const check = (): void => {
          const lines = this.stdout.toString().split('\n');
          if (lines.length > index + 1) {
            this.proc.off('gh-stdout', check);
            resolve(lines[index] as string);
          }
        };
        this.proc.on('gh-stdout', check);
        check();
      }),
      ms,
      `stdout line ${index}`,
    );
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    await within(this.exited, 10_000, 'child exit');
  }
}

describe('daemon/transports/mqtt end to end (reference backend, backend client, swtpm, aedes)', function () {
  this.timeout(120_000);
  let dir: string;
  let tpm: TpmGatewayKey;
  let tb: TestBackend;
  let closeAgent: () => Promise<void>;
  let side: GatewayBackendSide;
  let h: Harness;
  let tlsHarness: Harness;
  let caPem: string;
  const devices = new Map<string, Ed25519Signer>();
  const children: Child[] = [];

  const backendKeys = (): Map<string, Uint8Array> => backendKeysOf(tb);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-mqtt-e2e-'));
    tpm = await startTpmGatewayKey(dir);
    const { keyStore } = tpm;
    tb = await startTestBackend();
    await tb.addGateway(GW, { tpmPublicKeyPem: keyStore.publicKeyPem() });
    for (const dev of ['sensor-1', 'sensor-2', 'mosq-1', 'mosq-2']) devices.set(dev, await tb.addDevice(dev));
    const { http, close } = backendHttpFor(tb, 3000);
    closeAgent = close;
    // The session is obtained with the TPM key (startBackendSide fails otherwise).
    side = await startBackendSide({ gw: GW, http, tpmSigner: keyStore.signer(`tpm:${GW}`), tpmPublicKeySpki: keyStore.publicKeySpkiDer(), backendKeys: backendKeys(), stateDir: join(dir, 'state') });
    const { client, sessions } = side;
    h = await startHarness(client, sessions, { gw: GW });
    const cert = await issueCert(join(dir, 'mqtt-pki'), tb.pki.ca, { name: 'mqtt', sans: ['localhost', '127.0.0.1'] });
    caPem = tb.pki.ca.certPem;
    tlsHarness = await startHarness(client, sessions, {
      gw: GW,
      transport: { tcp: false, tls: { host: '127.0.0.1', port: 0, cert: cert.certPem, key: cert.keyPem } },
    });
  });

  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop()));
  });

  after(async () => {
    await tlsHarness?.stop();
    await h?.stop();
    await side?.stop();
    await closeAgent?.();
    await tb?.close();
    await tpm?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function signer(dev: string): Ed25519Signer {
    const s = devices.get(dev);
    if (s === undefined) throw new Error(dev);
    return s;
  }

  it('welcomes the reference peripheral, which authenticates the gateway from the welcome', async () => {
    const p = peripheralFor(h.url, signer('sensor-1'), backendKeys());
    try {
      await p.connect();
      const r = await p.authenticate();
      assert.equal(r.kind, 'authenticated', JSON.stringify(r));
      if (r.kind !== 'authenticated') return;
      assert.equal(r.welcome.gw, GW);
      assert.equal(r.credential.gw, GW);
      // The credential binds the session key to this gateway's TPM key.
      assert.deepEqual(r.credential.tpk, sha256(tpm.keyStore.publicKeySpkiDer()));
      assert.deepEqual(parseGatewayCredential(r.welcome.cred).payload.spk, r.credential.spk);
      // After the welcome the device has its lease policy.
      const granted = await p.client.subscribeAsync('devices/sensor-1/cmd/#', { qos: 1 });
      assert.equal(granted[0]?.qos, 1);
      await p.client.publishAsync('devices/sensor-1/temp', '20', { qos: 1 });
      assert.ok(p.client.connected);
    } finally {
      await p.close();
    }
  });

  it('rejects an unregistered device with unknown-device, signed by the session key', async () => {
    const { Ed25519Signer: Signer } = await import('../../../../protocol/index.js');
    const stranger = Signer.generate('stranger-9');
    const p = peripheralFor(h.url, stranger, backendKeys());
    try {
      await p.connect();
      const r = await p.authenticate();
      assert.deepEqual(r.kind === 'rejected' ? [r.reason, r.signed] : r, ['unknown-device', true]);
    } finally {
      await p.close();
    }
  });

  it('welcomes the reference peripheral over the TLS listener (certificate made at test time)', async () => {
    const port = tlsHarness.transport.addresses().tls?.port;
    assert.ok(port);
    const p = peripheralFor(`mqtts://127.0.0.1:${port}`, signer('sensor-2'), backendKeys(), { ca: caPem });
    try {
      await p.connect();
      assert.equal((await p.authenticate()).kind, 'authenticated');
    } finally {
      await p.close();
    }
  });

  /** Resolves once the transport granted `filter` to some connection. */
  function subscribed(harness: Harness, filter: string): Promise<void> {
    return within(
      new Promise<void>((resolve) => {
        const on = (_conn: string, f: string): void => {
          if (f !== filter) return;
          harness.transport.off('subscribed', on);
          resolve();
        };
        harness.transport.on('subscribed', on);
      }),
      10_000,
      `subscription to ${filter}`,
    );
  }

  const common = (): string[] => ['-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(h.port), '-q', '1'];

  // protocol-v2 "MQTT transport" (applied to v1): replies go to the connection that owns the
  // exchange only, so a mosquitto_sub on the down topic no longer sees another connection's
  // replies (these two tests used to read the exchange through one).
  it('answers mosquitto_pub (random client id) on its own connection only: a mosquitto_sub on the down topic gets nothing', async () => {
    const dev = 'mosq-1';
    const downTopic = `gatehouse/v1/${dev}/down`;
    const ready = subscribed(h, downTopic);
    const sub = new Child('mosquitto_sub', [...common(), '-t', downTopic, '-F', '%x']);
    children.push(sub);
    await ready;
    const creqFile = join(dir, 'creq.cbor');
    await writeFile(creqFile, encodeChallengeRequest({ type: 'challenge-request', version: 1, dev }));
    // No -i: mosquitto_pub makes up a random client id; the gateway takes any (CONNACK 0, and
    // the QoS 1 publish on the up topic is acknowledged: exit 0).
    const pub = new Child('mosquitto_pub', [...common(), '-t', `gatehouse/v1/${dev}/up`, '-f', creqFile, '-q', '1']);
    children.push(pub);
    assert.equal(await within(pub.exited, 10_000, 'mosquitto_pub exit'), 0, pub.stderr);
    // A full exchange afterwards on an mqtt.js connection with a random client id: its welcome
    // reaches it, and by then the subscriber has seen neither that challenge nor this exchange.
    const p = peripheralFor(h.url, signer(dev), backendKeys(), { clientId: `rnd-${randomNonce(6).join('')}` });
    await p.connect();
    try {
      assert.equal((await p.authenticate()).kind, 'authenticated');
    } finally {
      await p.close();
    }
    assert.equal(sub.stdout.length, 0, 'nothing delivered to the mere subscriber');
  });

  it('binds gn to the connection: a hello sent on another connection is stale-challenge, delivered to that connection only, and does not burn gn', async () => {
    const dev = 'mosq-2';
    const up = `gatehouse/v1/${dev}/up`;
    const down = `gatehouse/v1/${dev}/down`;
    const a = await rawClient(h.url, { clientId: '' });
    const b = await rawClient(h.url, { clientId: '' });
    try {
      const seenByA: Buffer[] = [];
      a.on('message', (_t, m: Buffer) => seenByA.push(m));
      await a.subscribeAsync(down, { qos: 1 });
      await b.subscribeAsync(down, { qos: 1 });
      const gotChallenge = nextMessage(a, down);
      await a.publishAsync(up, Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev })), { qos: 1 });
      const challenge = decodeChallenge(new Uint8Array(await gotChallenge));
      const hello = await signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: challenge.gn }, signer(dev));
      const gotB = nextMessage(b, down);
      await b.publishAsync(up, Buffer.from(hello), { qos: 1 });
      const reject = parseReject(new Uint8Array(await gotB));
      assert.equal(reject.message.reason, 'stale-challenge');
      assert.deepEqual(reject.message.hh, sha256(hello));
      assert.ok(reject.signed !== null, 'signed by the session key');
      const gotA = nextMessage(a, down);
      await a.publishAsync(up, Buffer.from(hello), { qos: 1 });
      const welcome = new Uint8Array(await gotA);
      assert.equal(decodeDownMessage(welcome).type, 'welcome');
      assert.ok(checkWelcome(welcome, { backendKeys: backendKeys(), dev, helloBytes: hello }).ok);
      assert.equal(seenByA.length, 2, "A saw its challenge and welcome, never B's reject");
    } finally {
      a.end(true);
      b.end(true);
    }
  });

  it('mosquitto_pub -V mqttv5 is refused at CONNACK: unacceptable protocol version', async () => {
    const pub = new Child('mosquitto_pub', ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(h.port), '-i', 'mosq-1', '-t', 'x', '-m', 'x']);
    children.push(pub);
    const code = await within(pub.exited, 10_000, 'mosquitto_pub exit');
    assert.notEqual(code, 0);
    assert.match(pub.stderr, /protocol version/i);
  });
});
