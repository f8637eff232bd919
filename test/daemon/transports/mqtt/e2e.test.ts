/**
 * End to end over real MQTT on loopback, with the real parts: the reference backend over HTTPS
 * (test/helpers/backend.ts), the project's backend client and session manager, the gateway key
 * in a real swtpm through the TPM key store, the pipeline, the aedes transport (TCP and TLS with
 * a certificate made now), the reference peripheral on mqtt.js, and mosquitto_pub/mosquitto_sub
 * as a client we did not write.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCert } from '../../../../backend/pki.js';
import { BackendClient } from '../../../../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../../../../daemon/backend-client/dispatcher.js';
import { SessionManager } from '../../../../daemon/backend-client/session.js';
import {
  checkWelcome,
  decodeChallenge,
  decodeDownMessage,
  encodeChallengeRequest,
  parseGatewayCredential,
  parseReject,
  randomNonce,
  sha256,
  signHello,
  type Ed25519Signer,
} from '../../../../protocol/index.js';
import { provisionTpmKey } from '../../../../tpm/provision.js';
import { TpmKeyStore } from '../../../../tpm/tpm-key-store.js';
import { startTestBackend, type TestBackend } from '../../../../testkit/backend.js';
import { Swtpm } from '../../../../testkit/swtpm.js';
import { peripheralFor, startHarness, within, type Harness } from './harness.js';
import { BACKEND_CLIENT_DEFAULTS } from '../../../../testkit/component-defaults.js';

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
  let swtpm: Swtpm;
  let keyStore: TpmKeyStore;
  let tb: TestBackend;
  let http: BackendHttp;
  let closeAgent: () => Promise<void>;
  let sessions: SessionManager;
  let client: BackendClient;
  let h: Harness;
  let tlsHarness: Harness;
  let caPem: string;
  const devices = new Map<string, Ed25519Signer>();
  const children: Child[] = [];

  const backendKeys = (): Map<string, Uint8Array> => new Map([[tb.backend.kid, tb.backend.publicKeyRaw]]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-mqtt-e2e-'));
    swtpm = await Swtpm.start();
    await provisionTpmKey({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm') });
    keyStore = new TpmKeyStore({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm') });
    await keyStore.open();
    tb = await startTestBackend();
    await tb.addGateway(GW, { tpmPublicKeyPem: keyStore.publicKeyPem() });
    for (const dev of ['sensor-1', 'sensor-2', 'mosq-1', 'mosq-2']) devices.set(dev, await tb.addDevice(dev));
    const agent = createBackendDispatcher({ url: tb.backend.url, ca: tb.caPem, connectTimeoutMs: 3000 });
    closeAgent = () => agent.close();
    http = new BackendHttp({ url: tb.backend.url, dispatcher: agent });
    sessions = new SessionManager({
      gw: GW,
      http,
      tpmSigner: keyStore.signer(`tpm:${GW}`),
      tpmPublicKeySpki: keyStore.publicKeySpkiDer(),
      backendKeys: backendKeys(),
      stateDir: join(dir, 'state'),
    });
    assert.equal(await sessions.start(), true, 'session obtained with the TPM key');
    client = new BackendClient({ gw: GW, http, session: sessions, backendKeys: backendKeys(), stateDir: join(dir, 'state'), ...BACKEND_CLIENT_DEFAULTS, revocationPollMs: 0 });
    await client.start();
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
    await client?.stop();
    sessions?.stop();
    await closeAgent?.();
    await tb?.close();
    await keyStore?.close();
    await swtpm?.dispose();
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
      assert.deepEqual(r.credential.tpk, sha256(keyStore.publicKeySpkiDer()));
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

  it('runs the whole exchange with mosquitto_pub -l and mosquitto_sub, payloads from files', async () => {
    const dev = 'mosq-1';
    const downTopic = `gatehouse/v1/${dev}/down`;
    const creqFile = join(dir, 'creq.cbor');
    await writeFile(creqFile, encodeChallengeRequest({ type: 'challenge-request', version: 1, dev }));
    const ready = subscribed(h, downTopic);
    // -F %x: one hex line per message, so binary payloads cannot be confused with the separator.
    const sub = new Child('mosquitto_sub', [...common(), '-i', dev, '-t', downTopic, '-F', '%x']);
    children.push(sub);
    await ready;
    // One mosquitto_pub connection for the whole exchange: protocol-v1 binds gn to it. With -l
    // each stdin line is one message, cut at \n and at NUL (strlen): payloads must avoid both.
    const pub = new Child('mosquitto_pub', [...common(), '-i', dev, '-t', `gatehouse/v1/${dev}/up`, '-l']);
    children.push(pub);
    const line = (b: Uint8Array): Buffer => Buffer.concat([Buffer.from(b), Buffer.from('\n')]);
    const clean = (b: Uint8Array): boolean => !b.includes(0x00) && !b.includes(0x0a);
    let received = 0;
    let hello: Uint8Array | undefined;
    for (let attempt = 0; attempt < 8 && hello === undefined; attempt++) {
      const creq = new Uint8Array(await readFile(creqFile));
      assert.ok(clean(creq));
      pub.proc.stdin?.write(line(creq));
      const challenge = decodeChallenge(Buffer.from(await sub.line(received++), 'hex'));
      assert.equal(challenge.gw, GW);
      if (!clean(challenge.gn)) continue;
      for (let i = 0; i < 64 && hello === undefined; i++) {
        const h1 = await signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: challenge.gn }, signer(dev));
        if (clean(h1)) hello = h1;
      }
    }
    assert.ok(hello, 'a hello without \\n and NUL bytes');
    const helloFile = join(dir, 'hello.cbor');
    await writeFile(helloFile, hello);
    pub.proc.stdin?.write(line(new Uint8Array(await readFile(helloFile))));
    const welcome = Buffer.from(await sub.line(received++), 'hex');
    const check = checkWelcome(welcome, { backendKeys: backendKeys(), dev, helloBytes: hello });
    assert.ok(check.ok, check.ok ? '' : `${check.code}: ${check.detail}`);
    pub.proc.stdin?.end();
    assert.equal(await within(pub.exited, 10_000, 'mosquitto_pub exit'), 0, pub.stderr);
  });

  it('binds gn to the connection: a hello sent by another mosquitto_pub is stale-challenge, and does not burn gn (replies captured with mosquitto_sub -C 1 -N)', async () => {
    const dev = 'mosq-2';
    const downTopic = `gatehouse/v1/${dev}/down`;
    const clean = (b: Uint8Array): boolean => !b.includes(0x00) && !b.includes(0x0a);
    /** Starts mosquitto_sub -C 1 -N writing the next message's raw bytes to `outFile`. */
    const capture = async (outFile: string): Promise<() => Promise<Uint8Array>> => {
      const fd = openSync(outFile, 'w', 0o600);
      const ready = subscribed(h, downTopic);
      const sub = new Child('mosquitto_sub', [...common(), '-i', dev, '-t', downTopic, '-C', '1', '-N'], fd);
      children.push(sub);
      closeSync(fd);
      await ready;
      return async () => {
        assert.equal(await within(sub.exited, 10_000, 'mosquitto_sub -C 1 exit'), 0, sub.stderr);
        return new Uint8Array(await readFile(outFile));
      };
    };
    // Two long-lived mosquitto_pub processes: two MQTT connections (A and B) for one device.
    const pubArgs = [...common(), '-i', dev, '-t', `gatehouse/v1/${dev}/up`, '-l'];
    const pubA = new Child('mosquitto_pub', pubArgs);
    const pubB = new Child('mosquitto_pub', pubArgs);
    children.push(pubA, pubB);
    const send = async (pub: Child, file: string): Promise<void> => {
      const bytes = new Uint8Array(await readFile(file));
      assert.ok(clean(bytes), 'mosquitto_pub -l cuts lines at \\n and NUL');
      pub.proc.stdin?.write(Buffer.concat([Buffer.from(bytes), Buffer.from('\n')]));
    };
    const creqFile = join(dir, 'creq-2.cbor');
    await writeFile(creqFile, encodeChallengeRequest({ type: 'challenge-request', version: 1, dev }));
    let hello: Uint8Array | undefined;
    for (let attempt = 0; attempt < 8 && hello === undefined; attempt++) {
      const got = await capture(join(dir, `challenge-2-${attempt}.cbor`));
      await send(pubA, creqFile);
      const challenge = decodeChallenge(await got());
      if (!clean(challenge.gn)) continue;
      for (let i = 0; i < 64 && hello === undefined; i++) {
        const h1 = await signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: challenge.gn }, signer(dev));
        if (clean(h1)) hello = h1;
      }
    }
    assert.ok(hello);
    const helloFile = join(dir, 'hello-2.cbor');
    await writeFile(helloFile, hello);
    // On connection B the gn is not outstanding.
    let got = await capture(join(dir, 'reply-b.cbor'));
    await send(pubB, helloFile);
    const reply = await got();
    const reject = parseReject(reply);
    assert.equal(reject.message.reason, 'stale-challenge');
    assert.deepEqual(reject.message.hh, sha256(hello));
    assert.ok(reject.signed !== null, 'signed by the session key');
    // On connection A, which asked for it, the same hello is welcomed.
    got = await capture(join(dir, 'reply-a.cbor'));
    await send(pubA, helloFile);
    const welcome = await got();
    assert.equal(decodeDownMessage(welcome).type, 'welcome');
    assert.ok(checkWelcome(welcome, { backendKeys: backendKeys(), dev, helloBytes: hello }).ok);
    pubA.proc.stdin?.end();
    pubB.proc.stdin?.end();
    assert.equal(await within(pubA.exited, 10_000, 'mosquitto_pub exit'), 0, pubA.stderr);
    assert.equal(await within(pubB.exited, 10_000, 'mosquitto_pub exit'), 0, pubB.stderr);
  });

  it('mosquitto_pub -V mqttv5 is refused at CONNACK: unacceptable protocol version', async () => {
    const pub = new Child('mosquitto_pub', ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(h.port), '-i', 'mosq-1', '-t', 'x', '-m', 'x']);
    children.push(pub);
    const code = await within(pub.exited, 10_000, 'mosquitto_pub exit');
    assert.notEqual(code, 0);
    assert.match(pub.stderr, /protocol version/i);
  });
});
