import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { run } from '../../backend/cli.js';
import { createTestPki } from '../../backend/pki.js';
import { Ed25519Signer } from '../../protocol/index.js';
import { captureIO } from '../../testkit/cli-io.js';

interface Ran {
  code: number;
  out: string;
  err: string;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const io = captureIO(env);
  const code = await run(args, io);
  return { code, out: io.out(), err: io.err() };
}

function devKeyHex(): { hex: string; b64: string } {
  const raw = Buffer.from(Ed25519Signer.generate('x').publicKeyRaw);
  return { hex: raw.toString('hex'), b64: raw.toString('base64') };
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('backend/cli (gatehouse-backend)', () => {
  let dir: string;
  let data: string;
  const d = (...args: string[]) => cli([...args, '--data-dir', data]);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-backend-cli-'));
    data = join(dir, 'data');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('answers --help for every command, and usage errors with exit 2', async () => {
    for (const cmd of ['init', 'serve', 'gateway', 'device', 'import', 'pki']) {
      const r = await cli([cmd, '--help']);
      assert.equal(r.code, 0, cmd);
      assert.match(r.out, new RegExp(`gatehouse-backend ${cmd}`));
    }
    assert.equal((await cli(['--help'])).code, 0);
    assert.equal((await cli([])).code, 2);
    assert.equal((await cli(['frobnicate'])).code, 2);
    assert.equal((await d('device', 'add', '--dev', 'x')).code, 2);
    assert.equal((await d('device', 'add', '--bogus')).code, 2);
  });

  it('init creates the signing key (0600) and prints pk_S; a second init keeps it', async () => {
    const r = await d('init', '--json');
    assert.equal(r.code, 0, r.err);
    const first = JSON.parse(r.out) as { kid: string; publicKeyHex: string; publicKeyBase64: string; created: boolean };
    assert.equal(first.created, true);
    assert.match(first.publicKeyHex, /^[0-9a-f]{64}$/);
    assert.equal(Buffer.from(first.publicKeyBase64, 'base64').toString('hex'), first.publicKeyHex);
    assert.equal(statSync(join(data, 'backend-signing-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(data, 'registry.sqlite')).mode & 0o777, 0o600);
    const again = await d('init');
    assert.equal(again.code, 0);
    assert.match(again.out, /already initialised/);
    assert.match(again.out, new RegExp(`pk_S \\(hex\\): ${first.publicKeyHex}`));
    assert.match(again.out, new RegExp(`kid_S: ${first.kid}`));
  });

  it('adds, lists and revokes gateways and devices', async () => {
    const tpm = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    writeFileSync(join(dir, 'show.txt'), `Gateway public key:\n${tpm}thumbprint: abc\n`);
    writeFileSync(join(dir, 'show.json'), JSON.stringify({ handle: '0x81010001', thumbprint: 'x', publicKeyPem: tpm }));
    assert.equal((await d('gateway', 'add', '--gw', 'gw-a', '--tpm-public-key', join(dir, 'show.txt'), '--groups', 'plant')).code, 0);
    const jsonAdd = await d('gateway', 'add', '--gw', 'gw-b', '--tpm-public-key', join(dir, 'show.json'));
    assert.equal(jsonAdd.code, 0, jsonAdd.err);
    const dup = await d('gateway', 'add', '--gw', 'gw-b', '--tpm-public-key', join(dir, 'show.json'));
    assert.equal(dup.code, 1);
    assert.match(dup.err, /already exists/);
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    writeFileSync(join(dir, 'ed.pem'), ed);
    const notP256 = await d('gateway', 'add', '--gw', 'gw-c', '--tpm-public-key', join(dir, 'ed.pem'));
    assert.equal(notP256.code, 1);
    assert.match(notP256.err, /P-256/);

    const k = devKeyHex();
    assert.equal((await d('device', 'add', '--dev', 'dev-1', '--public-key', k.hex, '--gateways', 'gw-a,group:plant')).code, 0);
    assert.equal((await d('device', 'add', '--dev', 'dev-2', '--public-key', k.b64, '--gateways', '*', '--policy', '{"pub":["t/{dev}"],"sub":[]}')).code, 0);
    assert.equal((await d('device', 'add', '--dev', 'dev-3', '--public-key', join(dir, 'ed.pem'), '--gateways', 'gw-b')).code, 0);
    const badPolicy = await d('device', 'add', '--dev', 'dev-4', '--public-key', k.hex, '--gateways', '*', '--policy', '{"pub":["a/#/b"],"sub":[]}');
    assert.equal(badPolicy.code, 1);
    const list = JSON.parse((await d('device', 'list', '--json')).out) as { id: string; status: string; gateways: string[]; policy: unknown }[];
    assert.deepEqual(
      list.map((x) => [x.id, x.status, x.gateways]),
      [
        ['dev-1', 'active', ['gw-a', 'group:plant']],
        ['dev-2', 'active', ['*']],
        ['dev-3', 'active', ['gw-b']],
      ],
    );
    assert.deepEqual(list[1]?.policy, { pub: ['t/{dev}'], sub: [] });
    assert.equal((await d('device', 'revoke', '--dev', 'dev-1')).code, 0);
    assert.equal((await d('device', 'revoke', '--dev', 'dev-1')).code, 1);
    assert.match((await d('device', 'list')).out, /^dev-1\trevoked/m);
    assert.equal((await d('gateway', 'revoke', '--gw', 'gw-a')).code, 0);
    assert.match((await d('gateway', 'list')).out, /^gw-a\trevoked/m);
  });

  it('imports CSV all or nothing, reporting each bad line by number', async () => {
    const [a, b, c] = [devKeyHex(), devKeyHex(), devKeyHex()];
    const bad = [
      'dev,public_key,gateways,policy',
      `dev-a,${a.hex},gw-1;gw-2`,
      `dev-b,${b.b64},*,"{""pub"":[""x/{dev}""],""sub"":[]}"`,
      `dev b,${c.hex},*,`,
      `dev-c,abcd,*,`,
      '',
      `dev-a,${c.hex},*,`,
      `dev-d,${c.hex},,`,
      `dev-e,${c.hex}`,
    ].join('\n');
    writeFileSync(join(dir, 'bad.csv'), bad);
    const r = await d('import', join(dir, 'bad.csv'));
    assert.equal(r.code, 1);
    const lines = r.err.split('\n').filter((l) => l.includes('bad.csv:'));
    assert.deepEqual(
      lines.map((l) => Number(/bad\.csv:(\d+):/.exec(l)?.[1])),
      [4, 5, 7, 8, 9],
      r.err,
    );
    assert.match(r.err, /nothing imported/);
    assert.equal((await d('device', 'list', '--json')).out.trim(), '[]');

    const good = bad.split('\n').slice(0, 3).join('\r\n');
    writeFileSync(join(dir, 'good.csv'), good);
    const ok = await d('import', join(dir, 'good.csv'));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /imported 2 device/);
    const list = JSON.parse((await d('device', 'list', '--json')).out) as { id: string; gateways: string[]; policy: unknown }[];
    assert.deepEqual(list.map((x) => [x.id, x.gateways]), [
      ['dev-a', ['gw-1', 'gw-2']],
      ['dev-b', ['*']],
    ]);
    assert.deepEqual(list[1]?.policy, { pub: ['x/{dev}'], sub: [] });
    const again = await d('import', join(dir, 'good.csv'));
    assert.equal(again.code, 1);
    assert.match(again.err, /good\.csv:2: device "dev-a" already exists/);
  });

  it('imports CSV whose header names the key column publicKey, as the JSON field is named', async () => {
    const [a, b] = [devKeyHex(), devKeyHex()];
    writeFileSync(join(dir, 'camel.csv'), `dev,publicKey,gateways\nc-1,${a.hex},*\nc-2,${b.b64},gw-1\n`);
    const ok = await d('import', join(dir, 'camel.csv'));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /imported 2 device/);
    const list = JSON.parse((await d('device', 'list', '--json')).out) as { id: string; publicKey: string }[];
    assert.deepEqual(list.map((x) => [x.id, x.publicKey]), [
      ['c-1', a.hex],
      ['c-2', Buffer.from(b.b64, 'base64').toString('hex')],
    ]);
    writeFileSync(join(dir, 'both.csv'), `dev,public_key,publicKey,gateways\nc-3,${a.hex},${a.hex},*\n`);
    const both = await d('import', join(dir, 'both.csv'));
    assert.equal(both.code, 1);
    assert.match(both.err, /both\.csv:1: column "public_key" appears twice/);
  });

  it('sets the data directory to 0700 on every command, not only when it creates it', async () => {
    mkdirSync(data, { mode: 0o755 });
    chmodSync(data, 0o755);
    assert.equal((await d('gateway', 'list')).code, 0);
    assert.equal(statSync(data).mode & 0o777, 0o700);
    chmodSync(data, 0o750);
    assert.equal((await d('init')).code, 0);
    assert.equal(statSync(data).mode & 0o777, 0o700);
  });

  it('pki takes --data-dir (as every command does) and writes to its pki/ unless --out is given', async () => {
    const r = await d('pki', '--dns', 'localhost');
    assert.equal(r.code, 0, r.err);
    assert.equal(statSync(join(data, 'pki', 'ca.pem')).isFile(), true);
    assert.equal(statSync(join(data, 'pki', 'server.key')).mode & 0o077, 0);
    assert.equal(statSync(data).mode & 0o777, 0o700);
    const bare = await cli(['pki', '--dns', 'localhost'], { GATEHOUSE_BACKEND_DATA_DIR: join(dir, 'env-data') });
    assert.equal(bare.code, 0, bare.err);
    assert.equal(statSync(join(dir, 'env-data', 'pki', 'server.pem')).isFile(), true);
    assert.equal((await d('pki')).code, 2);
  });

  it('serve refuses to start without --public-origin, or with one that is not https://host[:port] (exit 2)', async () => {
    const base = ['serve', '--cert', join(dir, 'none.pem'), '--key', join(dir, 'none.key'), '--port', '0'];
    const missing = await d(...base);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /--public-origin is required/);
    for (const origin of ['http://backend.example', 'https://backend.example/api', 'https://backend.example/']) {
      const r = await d(...base, '--public-origin', origin);
      assert.equal(r.code, 2, origin);
      assert.match(r.err, /--public-origin: /);
    }
  });

  it('imports JSON arrays and JSON lines with line numbers', async () => {
    const [a, b] = [devKeyHex(), devKeyHex()];
    const arr = `[\n  {"dev": "j-1", "publicKey": "${a.hex}", "gateways": ["*"]},\n  {"dev": "j-2",\n   "publicKey": "nope", "gateways": ["*"]}\n]\n`;
    writeFileSync(join(dir, 'bad.json'), arr);
    const r = await d('import', join(dir, 'bad.json'));
    assert.equal(r.code, 1);
    assert.match(r.err, /bad\.json:3: /);
    assert.doesNotMatch(r.err, /bad\.json:2: /);
    const lines = `{"dev": "j-1", "publicKey": "${a.hex}", "gateways": ["*"]}\n{"dev": "j-2", "publicKey": "${b.b64}", "gateways": "gw-1 gw-2"}\n`;
    writeFileSync(join(dir, 'good.jsonl'), lines);
    const ok = await d('import', join(dir, 'good.jsonl'));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /imported 2/);
  });

  it('serve runs the HTTPS API standalone and stops on SIGTERM', async () => {
    const pki = await createTestPki(join(dir, 'pki'), { dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'backend/cli.ts', 'serve', '--data-dir', data, '--cert', pki.server.certPath, '--key', pki.server.keyPath, '--port', '0', '--public-origin', 'https://localhost:8443'],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const agent = new Agent({ connect: { ca: pki.ca.certPem } });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening" line within 20 s: ${out}`)), 20_000);
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /listening on (https:\/\/\S+)/.exec(out);
          if (m?.[1]) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        child.once('exit', (code) => reject(new Error(`exited early (${code}): ${out}`)));
      });
      assert.match(out, /for https:\/\/localhost:8443 /);
      const res = await request(`${url}/v1/verify`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, dispatcher: agent });
      assert.equal(res.statusCode, 401);
      assert.equal(res.headers['content-type'], 'application/problem+json');
      assert.equal(((await res.body.json()) as { type: string }).type, 'urn:gatehouse:problem:signature-invalid');
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0);
    } finally {
      await agent.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
