/**
 * `gatehouse-backend command send|list` and `telemetry tail` against a running backend's store
 * (both stores): send prints the cid of a command the gateway then fetches; list shows its
 * delivery state; tail prints stored records, and --follow each new one.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { run } from '../../backend/cli.js';
import { tailTelemetry } from '../../backend/cli-data-plane.js';
import { generateX25519KeyPair, randomNonce, signHelloV2, type Ed25519Signer } from '../../protocol/index.js';
import { base64UrlEncode } from '../../protocol/http-signature.js';
import { startTestBackend, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { captureIO } from '../../testkit/cli-io.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';

for (const kind of STORE_KINDS) describe(`backend/cli: command and telemetry [${kind}]`, function () {
  this.timeout(30_000);
  const store = suiteStore(kind);
  let tb: TestBackend;
  let gw: TestGateway;
  let session: Ed25519Signer;
  let url: string | undefined;
  const signed = () => ({ keyid: `session:${gw.id}`, alg: 'ed25519' as const, sign: (b: Uint8Array) => session.sign(b) });
  const cli = async (...args: string[]) => {
    const io = captureIO();
    const code = await run([...args, '--data-dir', join(tb.dir, 'data'), ...(url !== undefined ? ['--store', url] : [])], io);
    return { code, out: io.out(), err: io.err() };
  };

  before(async () => {
    url = await store.fresh();
    tb = await startTestBackend({ ...(url !== undefined ? { store: url } : {}) });
    gw = await tb.addGateway('gw-cli');
    ({ session } = await tb.openSession(gw));
    const dev = await tb.addDevice('cli-dev');
    const hello = await signHelloV2(
      { type: 'hello', version: 2, dev: 'cli-dev', pn: randomNonce(), gn: randomNonce(), gw: 'gw-cli', ge: generateX25519KeyPair().publicKey, pe: generateX25519KeyPair().publicKey },
      dev,
    );
    const r = await tb.call('POST', '/v1/verify', { json: { hellos: [{ id: 'h', transport: 'mqtt', hello: base64UrlEncode(hello) }] }, ...signed() });
    assert.equal(r.status, 200);
  });
  after(async () => tb.close());

  it('command send prints the cid; list shows queued, relayed once fetched, done once acked', async () => {
    const sent = await cli('command', 'send', 'cli-dev', 'devices/cli-dev/cmd/led', 'on', '--ttl', '120');
    assert.equal(sent.code, 0, sent.err);
    const cid = Number(sent.out.trim());
    assert.ok(Number.isSafeInteger(cid) && cid >= 1, sent.out);
    assert.match((await cli('command', 'list', 'cli-dev')).out, new RegExp(`^cid ${cid}\\tqueued\\tgw=gw-cli\\ttopic=devices/cli-dev/cmd/led`, 'm'));
    const polled = await tb.call('GET', '/v1/gateways/gw-cli/commands?since=0', signed());
    assert.deepEqual((polled.body as { commands: { cid: number }[] }).commands.map((c) => c.cid), [cid]);
    assert.match((await cli('command', 'list', 'cli-dev')).out, new RegExp(`^cid ${cid}\\trelayed\\t`, 'm'));
    const acked = await tb.call('POST', '/v1/gateways/gw-cli/acks', { json: { acks: [{ dev: 'cli-dev', cid, status: 'done', at: Date.now() }] }, ...signed() });
    assert.deepEqual(acked.body, { accepted: 1 });
    const listed = JSON.parse((await cli('command', 'list', 'cli-dev', '--json')).out) as { cid: number; state: string; ackedBy: string }[];
    assert.deepEqual(listed.map((c) => [c.cid, c.state, c.ackedBy]), [[cid, 'done', 'gw-cli']]);
  });

  it('command send refuses bad usage (exit 2) and a device without a grant (exit 1, its code)', async () => {
    assert.equal((await cli('command', 'send', 'cli-dev', 'topic')).code, 2);
    assert.equal((await cli('command', 'send', 'cli-dev', 't', 'b', '--ttl', '0')).code, 2);
    await tb.addDevice('cli-v1');
    const r = await cli('command', 'send', 'cli-v1', 't', 'b');
    assert.equal(r.code, 1);
    assert.match(r.err, /GH_COMMAND_NO_GRANT/);
  });

  it('telemetry tail prints the stored records (of one device when named); --follow prints new ones until stopped', async () => {
    const rec = (seq: number, body: string) => ({ dev: 'cli-dev', sid: base64UrlEncode(new Uint8Array(8).fill(1)), seq, topic: 'devices/cli-dev/t', body: base64UrlEncode(new TextEncoder().encode(body)), receivedAt: Date.now() });
    assert.deepEqual((await tb.call('POST', '/v1/gateways/gw-cli/telemetry', { json: { records: [rec(0, 'hello'), rec(1, 'world')] }, ...signed() })).body, { accepted: 2, duplicates: 0 });
    const tail = await cli('telemetry', 'tail', 'cli-dev');
    assert.equal(tail.code, 0, tail.err);
    const lines = tail.out.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /\tcli-dev\tgw=gw-cli\tdevices\/cli-dev\/t\t"hello"\tsid=0101010101010101\tseq=0$/);
    assert.equal((await cli('telemetry', 'tail', 'other-dev')).out.trim(), '');

    const out: string[] = [];
    const stop = new AbortController();
    const following = tailTelemetry(tb.backend.store, { dev: 'cli-dev', last: 1, follow: true, json: true, everyMs: 20, signal: stop.signal, out: (l) => out.push(l) });
    const deadline = Date.now() + 5000;
    while (out.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await tb.call('POST', '/v1/gateways/gw-cli/telemetry', { json: { records: [rec(2, 'again')] }, ...signed() });
    while (out.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    await following;
    assert.deepEqual(out.map((l) => (JSON.parse(l) as { seq: number }).seq), [1, 2]);
  });
});
