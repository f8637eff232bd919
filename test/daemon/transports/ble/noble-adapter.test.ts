import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { isBleError } from '../../../../daemon/transports/ble/errors.js';
import { sanitiseAdvertisement } from '../../../../daemon/transports/ble/advertisement.js';
import { NobleCentral } from '../../../../daemon/transports/ble/noble-adapter.js';
import { BleTransport } from '../../../../daemon/transports/ble/transport.js';
import { EmulatedNobleBindings } from '../../../../peripherals/reference/ble-emulated-bindings.js';
import type { AuthPipeline } from '../../../../daemon/pipeline/types.js';
import { GATEHOUSE_SERVICE_UUID } from '../../../../protocol/ble.js';
import { ReferenceBlePeripheral } from '../../../../peripherals/reference/ble-peripheral.js';
import { Ed25519Signer } from '../../../../protocol/index.js';

/** What a plain `require('@abandonware/noble')` does on this machine, in a separate process. */
function probeNoble(): Promise<{ ok: boolean; code?: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['-e', "try{require('@abandonware/noble');process.stdout.write('ok')}catch(e){process.stdout.write('err:'+(e.code||e.message))}"],
      { timeout: 20_000 },
      (_err, stdout) => resolve(stdout.startsWith('ok') ? { ok: true } : { ok: false, code: stdout.slice(4) }),
    );
  });
}

const unusedPipeline: AuthPipeline = {
  challenge: () => Promise.reject(new Error('unused')),
  connectionChallenge: () => Promise.reject(new Error('unused')),
  hello: () => Promise.reject(new Error('unused')),
  connectionClosed: () => undefined,
  reject: () => Promise.reject(new Error('unused')),
};

describe('daemon/transports/ble/noble-adapter', () => {
  it('loads no noble at import time (noble opens HCI sockets on import)', async () => {
    const script = [
      "import { createRequire } from 'node:module';",
      "await import('./daemon/transports/ble/transport.ts');",
      "await import('./peripherals/reference/ble-peripheral.ts');",
      "const central = new (await import('./daemon/transports/ble/noble-adapter.ts')).NobleCentral();",
      'void central;',
      "process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@abandonware'))));",
    ].join('\n');
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    assert.deepEqual(JSON.parse(out), []);
  });

  it('reports GH_BLE_UNAVAILABLE from the real noble require on a kernel without Bluetooth', async function () {
    const probe = await probeNoble();
    const central = new NobleCentral({ startTimeoutMs: 2_000 });
    const transport = new BleTransport({ central, pipeline: unusedPipeline });
    if (probe.ok) {
      // This machine has Bluetooth: the same call must then not fail on loading.
      await transport.start().catch((e: unknown) => assert.ok(!isBleError(e) || !/EAFNOSUPPORT/.test(e.message)));
      await transport.stop();
      return;
    }
    await assert.rejects(transport.start(), (e: unknown) => {
      assert.ok(isBleError(e, 'GH_BLE_UNAVAILABLE'));
      assert.match(e.message, /^BLE unavailable: /);
      assert.ok(e.message.includes(String(probe.code)), `${e.message} names ${probe.code}`);
      assert.ok(e.cause instanceof Error);
      return true;
    });
    assert.equal(transport.stats().active, 0);
    // A second start fails the same way (no half-initialised state left behind).
    await assert.rejects(central.start(), (e: unknown) => isBleError(e, 'GH_BLE_UNAVAILABLE'));
  });

  it('reports GH_BLE_UNAVAILABLE when the loader throws, without touching noble', async () => {
    const central = new NobleCentral({
      require: () => {
        throw Object.assign(new Error('Address family not supported by protocol'), { code: 'EAFNOSUPPORT' });
      },
    });
    await assert.rejects(central.start(), (e: unknown) => isBleError(e, 'GH_BLE_UNAVAILABLE') && /EAFNOSUPPORT/.test(e.message));
  });

  it('accepts both export shapes of noble (module.exports and default)', async () => {
    const req = createRequire(import.meta.url);
    for (const wrap of [(m: unknown) => m, (m: unknown) => ({ default: m })]) {
      const radio = new EmulatedNobleBindings();
      const central = new NobleCentral({ bindings: radio, require: (id) => wrap(req(id)) });
      await central.start();
      assert.equal(central.state, 'poweredOn');
      await central.stop();
    }
  });

  it('starts again after a stop, on the same noble', async () => {
    const radio = new EmulatedNobleBindings();
    const central = new NobleCentral({ bindings: radio, startTimeoutMs: 2_000 });
    await central.start();
    await central.startScanning(['84987abc']);
    await central.stop();
    assert.equal(central.state, 'unknown');
    await central.start();
    assert.equal(central.state, 'poweredOn');
    await central.startScanning(['84987abc']);
    await central.stop();
  });

  it('reports GH_BLE_UNAVAILABLE for an unauthorized adapter', async () => {
    const central = new NobleCentral({ bindings: new EmulatedNobleBindings({ initialState: 'unauthorized' }) });
    await assert.rejects(central.start(), (e: unknown) => isBleError(e, 'GH_BLE_UNAVAILABLE') && /unauthorized/.test(e.message));
  });

  it('starts on a powered-off adapter and refuses to connect until powered on', async () => {
    const radio = new EmulatedNobleBindings({ initialState: 'poweredOff' });
    const central = new NobleCentral({ bindings: radio, operationTimeoutMs: 500 });
    await central.start();
    assert.equal(central.state, 'poweredOff');
    await assert.rejects(central.connect('c0de00000001'), (e: unknown) => isBleError(e, 'GH_BLE_ADAPTER_OFF'));
    await assert.rejects(central.startScanning(['84987abc']), (e: unknown) => isBleError(e, 'GH_BLE_OPERATION_FAILED'));
    const on = new Promise<string>((resolve) => {
      const off = central.on('state', (s) => {
        off();
        resolve(s);
      });
    });
    radio.setAdapterState('poweredOn');
    assert.equal(await on, 'poweredOn');
    await central.startScanning(['84987abc']);
    await assert.rejects(central.connect('c0de00000001'), (e: unknown) => isBleError(e, 'GH_BLE_OPERATION_FAILED') && /not discovered/.test(e.message));
    await central.stop();
  });

  it('times out a scan the controller never confirms', async () => {
    const radio = new EmulatedNobleBindings();
    radio.startScanning = () => undefined; // a controller that never answers
    const central = new NobleCentral({ bindings: radio, operationTimeoutMs: 200 });
    await central.start();
    await assert.rejects(central.startScanning(['84987abc']), (e: unknown) => isBleError(e, 'GH_BLE_TIMEOUT'));
    const ac = new AbortController();
    const p = central.startScanning(['84987abc'], { signal: ac.signal, timeoutMs: 60_000 });
    ac.abort();
    await assert.rejects(p, (e: unknown) => isBleError(e, 'GH_BLE_ABORTED'));
    await central.stop();
  });

  describe('sanitiseAdvertisement', () => {
    it('keeps well-formed fields, normalised', () => {
      const r = sanitiseAdvertisement({ serviceUuids: ['84987ABC-71FE-493C-A15D-1DDD7D599687', '180f'], localName: 'gh-1' });
      assert.deepEqual(r, { advertisement: { serviceUuids: ['84987abc71fe493ca15d1ddd7d599687', '180f'], localName: 'gh-1' }, malformed: false });
    });

    it('drops and flags fields of the wrong type or size', () => {
      for (const raw of [
        null,
        'x',
        { serviceUuids: 'abcd' },
        { serviceUuids: [42] },
        { serviceUuids: ['not-a-uuid'] },
        { serviceUuids: Array(40).fill('180f') },
        { localName: 'a\u0000b' },
        { localName: 'n'.repeat(65) },
        { localName: 7 },
        { manufacturerData: 'zz' },
        { manufacturerData: new Uint8Array(300) },
        { serviceData: [{ uuid: 1, data: new Uint8Array(1) }] },
        { serviceData: {} },
      ]) {
        const r = sanitiseAdvertisement(raw);
        assert.equal(r.malformed, true, JSON.stringify(raw));
        assert.equal(r.advertisement.localName, undefined);
        assert.ok(r.advertisement.serviceUuids.length <= 32);
      }
    });
  });

  it("bounds the peripherals it and noble remember (LRU), whatever advertises", async () => {
    const radio = new EmulatedNobleBindings({ advertisingIntervalMs: 10 });
    const central = new NobleCentral({ bindings: radio, maxKnownPeripherals: 2 });
    await central.start();
    const seen = new Set<string>();
    const all = new Promise<void>((resolve) => {
      const off = central.on('discover', (d) => {
        seen.add(d.address);
        if (seen.size === 5) {
          off();
          resolve();
        }
      });
    });
    for (let n = 1; n <= 5; n++) {
      radio.addPeripheral(
        new ReferenceBlePeripheral({ address: `c0:de:00:00:aa:0${n}`, dev: `d${n}`, signer: Ed25519Signer.generate(`d${n}`), backendKeys: new Map() }),
      );
    }
    await central.startScanning([GATEHOUSE_SERVICE_UUID]);
    await all;
    const stats = central.stats();
    assert.equal(stats.known, 2);
    assert.equal(stats.nobleRetained, 2, 'noble forgot the evicted peripherals too');
    await central.stop();
  });
});

