import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { run } from '../../../peripherals/cli.js';
import {
  decodeChallengeRequest,
  ed25519PublicKeyFromRaw,
  encodeChallenge,
  helloHash,
  parseHello,
  signWelcome,
  verifySign1,
} from '../../../protocol/index.js';
import { FIXTURE_EXP, makeFixture, type ProtocolFixture } from '../../../testkit/protocol.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

async function cli(args: string[]): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await run(args, { stdout, stderr, env: {} });
  return { code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') };
}

describe('peripherals/cli (gatehouse peripheral)', () => {
  const tmp = tempDirEach('gh-pcli-');
  let f: ProtocolFixture;
  before(async () => {
    f = await makeFixture();
  });

  it('answers --help for itself and every command', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout.toString(), /verify-welcome/);
    for (const c of ['keygen', 'challenge-request', 'hello', 'verify-welcome']) {
      const r = await cli([c, '--help']);
      assert.equal(r.code, 0, c);
      assert.match(r.stdout.toString(), new RegExp(`gatehouse peripheral ${c}`));
    }
    assert.equal((await cli([])).code, 2);
    assert.equal((await cli(['frobnicate'])).code, 2);
    assert.equal((await cli(['keygen', '--dev', 'x'])).code, 2);
    assert.equal((await cli(['keygen', '--bogus'])).code, 2);
  });

  it('keygen → challenge-request → hello → verify-welcome, end to end', async () => {
    const key = join(tmp.path, 'dev.key');
    const kg = await cli(['keygen', '--dev', f.dev, '--out', key]);
    assert.equal(kg.code, 0, kg.stderr);
    const { dev, publicKey } = JSON.parse(kg.stdout.toString()) as { dev: string; publicKey: string };
    assert.equal(dev, f.dev);
    assert.equal((await cli(['keygen', '--dev', f.dev, '--out', key])).code, 1, 'refuses to overwrite');

    const cr = await cli(['challenge-request', '--dev', f.dev]);
    assert.equal(cr.code, 0);
    assert.equal(decodeChallengeRequest(new Uint8Array(cr.stdout)).dev, f.dev);

    const chPath = join(tmp.path, 'challenge.cbor');
    const helloPath = join(tmp.path, 'hello.cbor');
    await writeFile(chPath, encodeChallenge({ type: 'challenge', version: 1, dev: f.dev, gn: f.gn, gw: f.gw }));
    const h = await cli(['hello', '--key', key, '--challenge', chPath, '--out', helloPath]);
    assert.equal(h.code, 0, h.stderr);
    const hello = new Uint8Array(await readFile(helloPath));
    const parsed = parseHello(hello);
    assert.deepEqual(parsed.payload.gn, f.gn);
    assert.equal(verifySign1(parsed, ed25519PublicKeyFromRaw(Buffer.from(publicKey, 'hex'))), true);

    const welcomePath = join(tmp.path, 'welcome.cbor');
    await writeFile(welcomePath, await signWelcome({ type: 'welcome', version: 1, dev: f.dev, gw: f.gw, hh: helloHash(hello), cred: f.credential }, f.session));
    const pemPath = join(tmp.path, 'backend.pem');
    await writeFile(pemPath, ed25519PublicKeyFromRaw(f.backend.publicKeyRaw).export({ format: 'pem', type: 'spki' }));
    const hexKey = Buffer.from(f.backend.publicKeyRaw).toString('hex');
    const base = ['verify-welcome', '--hello', helloPath, '--welcome', welcomePath, '--now', String(FIXTURE_EXP - 1)];

    const okPem = await cli([...base, '--backend-key', pemPath]);
    assert.equal(okPem.code, 0, okPem.stdout.toString() + okPem.stderr);
    assert.match(okPem.stdout.toString(), /^ok: gateway gw-lab-1 authenticated/);
    assert.equal((await cli([...base, '--backend-key', hexKey, '--backend-kid', 'backend-1'])).code, 0);

    const wrongKid = await cli([...base, '--backend-key', hexKey, '--backend-kid', 'backend-2']);
    assert.equal(wrongKid.code, 1);
    assert.match(wrongKid.stdout.toString(), /^refused: GH_WELCOME_CRED_UNKNOWN_KID: /);

    const expired = await cli(['verify-welcome', '--hello', helloPath, '--welcome', welcomePath, '--now', String(FIXTURE_EXP), '--backend-key', hexKey]);
    assert.equal(expired.code, 1);
    assert.match(expired.stdout.toString(), /^refused: GH_WELCOME_EXPIRED: credential expired at/);

    const noClock = await cli(['verify-welcome', '--hello', helloPath, '--welcome', welcomePath, '--no-clock', '--backend-key', hexKey]);
    assert.equal(noClock.code, 0);

    // The fixture's own hello is not the one this welcome answers.
    await writeFile(helloPath, f.hello);
    const wrongHello = await cli([...base, '--backend-key', hexKey]);
    assert.equal(wrongHello.code, 1);
    assert.match(wrongHello.stdout.toString(), /^refused: GH_WELCOME_HELLO_HASH: /);

    const badKey = await cli([...base, '--backend-key', '00'.repeat(32)]);
    assert.equal(badKey.code, 1);
    assert.match(badKey.stderr, /small order/);
  });
});
