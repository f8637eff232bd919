/**
 * `gatehouse peripheral …`: the reference peripheral's key and message tools, for provisioning
 * and for debugging an exchange by hand (files in, files out, a precise verdict).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkWelcome, decodeSign1, ed25519PublicKeyProblem, ed25519RawFromKeyObject, encodeChallengeRequest, isValidId, parseHello, parseWelcome } from '../protocol/index.js';
import { GatehouseError } from '../common/errors.js';
import { generateKeyFile, loadKeyFile } from './reference/keyfile.js';
import { ReferencePeripheral } from './reference/peripheral.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, write, writeRaw, type CliIO } from '../common/cli-io.js';

const USAGE = `Usage: gatehouse peripheral <command> [options]

Reference-peripheral tools (protocol-v1).

Commands:
  keygen --dev ID --out FILE [--force]
      Make an Ed25519 key for device ID, write it to FILE (mode 0600) and print
      {"dev", "publicKey"} (hex) for registering the device with the backend.
  challenge-request --dev ID [--out FILE]
      Write a challenge-request (CBOR) to FILE or stdout.
  hello --key FILE --challenge FILE --out FILE
      Answer a challenge: write a hello signed with the key file's key.
  verify-welcome --backend-key PEM|HEX --hello FILE --welcome FILE
                 [--backend-kid KID] [--now UNIX_SECONDS | --no-clock]
      Run the peripheral's checks on a welcome. Prints why it is refused (exit 1).
      --backend-key: a PEM file (Ed25519 public key) or 64 hex digits (raw key).
      --backend-kid: the key's kid (default: trust the kid the credential names).
      --now: the time to check expiry against (default: this machine's clock).
  mqtt --key FILE --url mqtt://HOST:PORT --backend-key PEM|HEX --backend-kid KID [--ca FILE]
       [--protocol 1|2]
      Authenticate over MQTT as the key file's device, on one connection (challenge-request,
      hello, welcome), verify the welcome, and print the outcome. --protocol 2: protocol v2
      (gatehouse/v2 topics, a grant in the welcome, then a ping frame, its receipt and a bye).

Run "gatehouse peripheral <command> --help" for one command's options.
Exit codes: 0 ok, 1 failure or refused welcome, 2 usage error.
`;

const HELP: Record<string, string> = {
  keygen: 'Usage: gatehouse peripheral keygen --dev ID --out FILE [--force]\n\nWrites a new Ed25519 key file (mode 0600, atomically; never overwrites without --force)\nand prints {"dev","publicKey"} with the public key in hex.\n',
  'challenge-request': 'Usage: gatehouse peripheral challenge-request --dev ID [--out FILE]\n\nWrites {1:"challenge-request", 2:1, 3:ID} as CBOR to FILE, or to stdout.\n',
  hello: 'Usage: gatehouse peripheral hello --key FILE --challenge FILE --out FILE\n\nReads a challenge (CBOR), writes a hello (COSE_Sign1) signed with the key file, with a fresh pn.\n',
  'verify-welcome':
    'Usage: gatehouse peripheral verify-welcome --backend-key PEM|HEX --hello FILE --welcome FILE\n' +
    '                                         [--backend-kid KID] [--now UNIX_SECONDS | --no-clock]\n\n' +
    'Runs protocol-v1 "Peripheral checks on a welcome". Prints "ok …" (exit 0) or\n' +
    '"refused: CODE: detail" (exit 1).\n',
  mqtt:
    'Usage: gatehouse peripheral mqtt --key FILE --url mqtt://HOST:PORT|mqtts://HOST:PORT --backend-key PEM|HEX\n' +
    '                                --backend-kid KID [--ca FILE] [--timeout-ms N] [--protocol 1|2] [--msgs N]\n\n' +
    'Runs the whole exchange as the reference MQTT peripheral on ONE connection (protocol-v1 binds\n' +
    'the challenge to it), verifies the welcome and prints "welcomed …" (exit 0), or the reject\n' +
    'reason / the refused welcome check (exit 1). --ca: the CA of an mqtts listener.\n' +
    '--protocol 2: protocol v2 on gatehouse/v2/{dev}/up|down; after the welcome it sends a ping frame,\n' +
    'waits for its receipt and ends the session with a bye (default 1). --msgs N (v2): before the bye,\n' +
    'print the next N broker messages the gateway relays as msg frames, one line each: "msg SEQ TOPIC BODY"\n' +
    '(BODY as text, or hex: when not printable). A msg is data: it is never acted on as a command.\n',
};

/** A body as text when it is printable UTF-8, else `hex:` and its bytes. */
function printable(body: Uint8Array): string {
  const s = Buffer.from(body).toString('utf8');
  return Buffer.from(s, 'utf8').equals(body) && /^[\x20-\x7e]*$/.test(s) ? s : `hex:${Buffer.from(body).toString('hex')}`;
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw new UsageError(`--${name} is required`);
  return v;
}

async function readBackendKey(spec: string): Promise<Uint8Array> {
  let raw: Uint8Array;
  if (/^[0-9a-fA-F]{64}$/.test(spec)) {
    raw = new Uint8Array(Buffer.from(spec, 'hex'));
  } else {
    const pem = spec.includes('-----BEGIN') ? spec : await readFile(spec, 'utf8');
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch (cause) {
      throw new GatehouseError('GH_CLI_BACKEND_KEY', '--backend-key: not a PEM public key or 64 hex digits', { cause });
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new GatehouseError('GH_CLI_BACKEND_KEY', '--backend-key: the backend key must be Ed25519');
    raw = ed25519RawFromKeyObject(key);
  }
  const problem = ed25519PublicKeyProblem(raw);
  if (problem !== undefined) throw new GatehouseError('GH_CLI_BACKEND_KEY', `--backend-key: ${problem}`);
  return raw;
}

async function keygen(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: { dev: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' } }, strict: true });
  const dev = required(values, 'dev');
  const out = required(values, 'out');
  const key = await generateKeyFile(out, dev, { overwrite: values.force === true });
  write(io.stdout, `${JSON.stringify({ dev: key.dev, publicKey: Buffer.from(key.signer.publicKeyRaw).toString('hex') })}\n`);
  return EXIT_OK;
}

async function challengeRequest(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: { dev: { type: 'string' }, out: { type: 'string' } }, strict: true });
  const dev = required(values, 'dev');
  if (!isValidId(dev)) throw new UsageError('--dev must be 1–64 characters of [A-Za-z0-9._:-]');
  const bytes = encodeChallengeRequest({ type: 'challenge-request', version: 1, dev });
  if (typeof values.out === 'string') await writeFile(values.out, bytes);
  else writeRaw(io.stdout, bytes);
  return EXIT_OK;
}

async function hello(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: { key: { type: 'string' }, challenge: { type: 'string' }, out: { type: 'string' } }, strict: true });
  const keyPath = required(values, 'key');
  const challengePath = required(values, 'challenge');
  const out = required(values, 'out');
  const key = await loadKeyFile(keyPath);
  const peripheral = new ReferencePeripheral({ dev: key.dev, signer: key.signer, backendKeys: new Map() });
  const bytes = await peripheral.hello(new Uint8Array(await readFile(challengePath)));
  await writeFile(out, bytes);
  write(io.stderr, `hello for ${key.dev} written to ${out} (${bytes.length} bytes)\n`);
  return EXIT_OK;
}

async function verifyWelcome(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'backend-key': { type: 'string' },
      'backend-kid': { type: 'string' },
      hello: { type: 'string' },
      welcome: { type: 'string' },
      now: { type: 'string' },
      'no-clock': { type: 'boolean' },
    },
    strict: true,
  });
  const backendKey = await readBackendKey(required(values, 'backend-key'));
  const helloBytes = new Uint8Array(await readFile(required(values, 'hello')));
  const welcomeBytes = new Uint8Array(await readFile(required(values, 'welcome')));
  if (values.now !== undefined && values['no-clock'] === true) throw new UsageError('--now and --no-clock exclude each other');
  let now: number | undefined;
  if (values['no-clock'] !== true) {
    if (values.now !== undefined) {
      if (!/^\d{1,15}$/.test(values.now)) throw new UsageError('--now must be unix seconds');
      now = Number(values.now);
    } else {
      now = Math.floor(Date.now() / 1000);
    }
  }
  let dev: string;
  try {
    dev = parseHello(helloBytes).payload.dev;
  } catch (e) {
    write(io.stderr, `refused: the hello file is not a valid hello: ${(e as Error).message}\n`);
    return EXIT_FAILURE;
  }
  let kid = values['backend-kid'];
  if (kid === undefined) {
    // Without a kid we pin the one key under whatever kid the credential names.
    try {
      kid = decodeSign1(parseWelcome(welcomeBytes).payload.cred).kid;
    } catch {
      kid = '';
    }
  }
  const r = checkWelcome(welcomeBytes, { backendKeys: new Map([[kid, backendKey]]), dev, helloBytes, ...(now === undefined ? {} : { now }) });
  if (!r.ok) {
    write(io.stdout, `refused: ${r.code}: ${r.detail}\n`);
    return EXIT_FAILURE;
  }
  write(io.stdout, `ok: gateway ${r.credential.gw} authenticated to ${dev}; credential expires ${new Date(r.credential.exp * 1000).toISOString()}\n`);
  return EXIT_OK;
}

async function mqttExchange(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { key: { type: 'string' }, url: { type: 'string' }, 'backend-key': { type: 'string' }, 'backend-kid': { type: 'string' }, ca: { type: 'string' }, 'timeout-ms': { type: 'string' }, protocol: { type: 'string' }, msgs: { type: 'string' } },
    strict: true,
  });
  const protocol = values.protocol ?? '1';
  if (protocol !== '1' && protocol !== '2') throw new UsageError('--protocol must be 1 or 2');
  const url = required(values, 'url');
  if (!/^mqtts?:\/\/[^/]+$/.test(url)) throw new UsageError('--url must be mqtt://HOST:PORT or mqtts://HOST:PORT');
  const timeout = values['timeout-ms'] === undefined ? 10_000 : Number(values['timeout-ms']);
  if (!Number.isInteger(timeout) || timeout < 100 || timeout > 600_000) throw new UsageError('--timeout-ms must be a whole number from 100 to 600000');
  const msgs = values.msgs === undefined ? 0 : Number(values.msgs);
  if (!Number.isInteger(msgs) || msgs < 0 || msgs > 100_000) throw new UsageError('--msgs must be a whole number from 0 to 100000');
  if (msgs > 0 && protocol !== '2') throw new UsageError('--msgs needs --protocol 2');
  const key = await loadKeyFile(required(values, 'key'));
  const backendKey = await readBackendKey(required(values, 'backend-key'));
  const { MqttReferencePeripheral } = await import('./reference/mqtt-peripheral.js');
  const keys = new Map([[required(values, 'backend-kid'), backendKey]]);
  if (protocol === '2') return mqttExchangeV2({ url, timeout, ca: values.ca === undefined ? undefined : await readFile(values.ca), key, keys, msgs }, io);
  const peripheral = new ReferencePeripheral({ dev: key.dev, signer: key.signer, backendKeys: keys });
  const client = new MqttReferencePeripheral({ url, peripheral, timeoutMs: timeout, ...(values.ca !== undefined ? { ca: await readFile(values.ca) } : {}) });
  try {
    await client.connect();
    const r = await client.authenticate();
    if (r.kind === 'authenticated') {
      write(io.stdout, `welcomed: gateway ${r.credential.gw} authenticated to ${key.dev}; credential expires ${new Date(r.credential.exp * 1000).toISOString()}\n`);
      return EXIT_OK;
    }
    if (r.kind === 'rejected') write(io.stdout, `rejected: ${r.reason}${r.signed ? '' : ' (unsigned)'}; retry after ${r.retryAfterSeconds} s\n`);
    else write(io.stdout, `welcome refused: ${r.code}: ${r.detail}\n`);
    return EXIT_FAILURE;
  } finally {
    await client.close();
  }
}

/** `mqtt --protocol 2`: the v2 exchange, then one ping frame and its receipt, then a bye. */
async function mqttExchangeV2(
  o: { url: string; timeout: number; ca: Buffer | undefined; key: Awaited<ReturnType<typeof loadKeyFile>>; keys: Map<string, Uint8Array>; msgs: number },
  io: CliIO,
): Promise<number> {
  const { MqttReferencePeripheralV2 } = await import('./reference/mqtt-peripheral-v2.js');
  const { ReferencePeripheralV2 } = await import('./reference/session-v2.js');
  const { MemoryCommandStore } = await import('./reference/command-store.js');
  const peripheral = new ReferencePeripheralV2({ dev: o.key.dev, signer: o.key.signer, devicePublicKey: o.key.signer.publicKeyRaw, backendKeys: o.keys, commandStore: new MemoryCommandStore() });
  const client = new MqttReferencePeripheralV2({ url: o.url, peripheral, timeoutMs: o.timeout, ...(o.ca === undefined ? {} : { ca: o.ca }) });
  try {
    await client.connect();
    const r = await client.authenticate();
    if (r.kind === 'established') {
      await client.send(r.session.sealPing());
      const receipt = await client.nextReceipt();
      for (let i = 0; i < o.msgs; i++) {
        const m = await client.nextMsg();
        write(io.stdout, `msg ${m.seq} ${m.topic} ${printable(m.body)}\n`);
      }
      await client.send(r.session.sealBye());
      write(io.stdout, `welcomed (v2, ${r.session.mode}): gateway ${r.session.gw} authenticated to ${o.key.dev}; session ${Buffer.from(r.session.sid).toString('hex')}, life ${r.session.lifeSeconds} s; ping receipted (${receipt.settled.length} settled); bye sent\n`);
      return EXIT_OK;
    }
    if (r.kind === 'rejected') write(io.stdout, `rejected: ${r.reason}${r.signed ? '' : ' (unsigned)'}; retry after ${r.retryAfterSeconds} s\n`);
    else write(io.stdout, `welcome refused: check ${r.check}: ${r.code}: ${r.detail}\n`);
    return EXIT_FAILURE;
  } finally {
    await client.close();
  }
}

const COMMANDS: Record<string, (args: string[], io: CliIO) => Promise<number>> = {
  keygen,
  'challenge-request': challengeRequest,
  hello,
  'verify-welcome': verifyWelcome,
  mqtt: mqttExchange,
};

/** Entry point of `gatehouse peripheral`. */
export async function run(args: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    write(command === undefined ? io.stderr : io.stdout, USAGE);
    return command === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const handler = COMMANDS[command];
  if (handler === undefined) {
    write(io.stderr, `gatehouse peripheral: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    write(io.stdout, HELP[command] ?? USAGE);
    return EXIT_OK;
  }
  try {
    return await handler(rest, io);
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) {
      write(io.stderr, `gatehouse peripheral ${command}: ${(e as Error).message}\n\n${HELP[command] ?? USAGE}`);
      return EXIT_USAGE;
    }
    if (e instanceof GatehouseError) {
      write(io.stderr, `gatehouse peripheral ${command}: ${e.code}: ${e.message}\n`);
      return EXIT_FAILURE;
    }
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && typeof err.message === 'string') {
      write(io.stderr, `gatehouse peripheral ${command}: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    throw e;
  }
}
