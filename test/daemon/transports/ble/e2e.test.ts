/**
 * One BLE exchange end to end with every real part that runs here: the reference backend over
 * HTTPS (certificates made now, SQLite registry), the project's dispatcher, session manager and
 * backend client, the pipeline, the BLE transport, real noble over the emulated radio, and the
 * reference peripheral checking the welcome under the backend's pinned key. The gateway's TPM
 * key is a software P-256 key here (the backend sees only its public key and signatures).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from 'undici';
import { BackendClient } from '../../../../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../../../../daemon/backend-client/dispatcher.js';
import { SessionManager } from '../../../../daemon/backend-client/session.js';
import { Pipeline } from '../../../../daemon/pipeline/pipeline.js';
import { Ed25519Signer } from '../../../../protocol/index.js';
import { NobleCentral } from '../../../../daemon/transports/ble/noble-adapter.js';
import { BleTransport, type BleExchangeEvent } from '../../../../daemon/transports/ble/transport.js';
import { EmulatedNobleBindings } from '../../../../peripherals/reference/ble-emulated-bindings.js';
import { ReferenceBlePeripheral } from '../../../../peripherals/reference/ble-peripheral.js';
import { BACKEND_TEST_NAME, startTestBackend, type TestBackend } from '../../../../testkit/backend.js';
import { resultOf, waitForEvent } from './rig.js';
import { BACKEND_CLIENT_DEFAULTS } from '../../../../testkit/component-defaults.js';

const GW = 'gw-ble-e2e';

describe('BLE end to end (reference backend, backend client, pipeline, real noble on the emulated radio)', function () {
  let tb: TestBackend | undefined;
  let dir: string | undefined;
  let agent: Agent | undefined;
  let session: SessionManager | undefined;
  let client: BackendClient | undefined;
  let pipeline: Pipeline | undefined;
  let transport: BleTransport | undefined;

  after(async () => {
    await transport?.stop();
    pipeline?.close();
    await client?.stop();
    session?.stop();
    await agent?.close();
    await tb?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('welcomes a registered peripheral and rejects an unknown one, each verified at the peripheral', async () => {
    tb = await startTestBackend({ publicOrigin: (p) => `https://${BACKEND_TEST_NAME}:${p}` });
    const gw = tb.addGateway(GW);
    dir = await mkdtemp(join(tmpdir(), 'gh-ble-e2e-'));
    const url = `https://${BACKEND_TEST_NAME}:${tb.backend.port}`;
    agent = createBackendDispatcher({ url, ca: tb.caPem, connectAddress: '127.0.0.1', connectTimeoutMs: 3_000 });
    const http = new BackendHttp({ url, dispatcher: agent });
    const backendKeys = new Map([[tb.backend.kid, tb.backend.publicKeyRaw]]);
    const stateDir = join(dir, 'state');
    session = new SessionManager({
      gw: GW,
      http,
      tpmSigner: gw.tpm,
      tpmPublicKeySpki: new Uint8Array(gw.tpm.publicKey.export({ format: 'der', type: 'spki' })),
      backendKeys,
      stateDir,
    });
    assert.equal(await session.start(), true, 'the backend issued a session credential');
    client = new BackendClient({ gw: GW, http, session, backendKeys, stateDir, ...BACKEND_CLIENT_DEFAULTS, revocationPollMs: 0 });
    await client.start();
    pipeline = new Pipeline({ gw: GW, verifier: client, sessions: session });

    const radio = new EmulatedNobleBindings({ advertisingIntervalMs: 20 });
    transport = new BleTransport({ central: new NobleCentral({ bindings: radio }), pipeline, exchangeTimeoutMs: 15_000 });
    const exchanges: BleExchangeEvent[] = [];
    transport.on('exchange', (e) => exchanges.push(e));
    await transport.start();

    const known = new ReferenceBlePeripheral({
      address: 'c0:de:00:00:e2:01',
      dev: 'ble-e2e-1',
      signer: tb.addDevice('ble-e2e-1', { gateways: [GW] }),
      backendKeys,
      mtu: 23,
    });
    const stranger = new ReferenceBlePeripheral({
      address: 'c0:de:00:00:e2:02',
      dev: 'ble-e2e-2',
      signer: Ed25519Signer.generate('ble-e2e-2'),
      backendKeys,
      mtu: 247,
    });
    radio.addPeripheral(known);
    radio.addPeripheral(stranger);

    const ok = await resultOf(known, 20_000);
    assert.ok(ok.kind === 'welcome' && ok.check.ok, JSON.stringify(ok));
    assert.equal(ok.check.credential.gw, GW);
    const no = await resultOf(stranger, 20_000);
    assert.equal(no.kind === 'reject' && no.reason, 'unknown-device');

    if (exchanges.length < 2) {
      await waitForEvent<[BleExchangeEvent]>((l) => transport!.on('exchange', l), () => exchanges.length >= 2, 'both exchange events');
    }
    const byDev = new Map(exchanges.map((e) => [e.dev, e]));
    assert.equal(byDev.get('ble-e2e-1')?.outcome, 'welcome');
    assert.equal(byDev.get('ble-e2e-2')?.outcome, 'reject');
    assert.ok(client.stats().hellos >= 2);
    assert.deepEqual(radio.violations, []);
  });
});
