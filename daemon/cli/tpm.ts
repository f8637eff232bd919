/**
 * `gatehouse tpm provision|show|rotate-auth`: create the gateway identity key in the TPM, print what
 * an operator registers with the backend (public key PEM and SHA-256 thumbprint of its SPKI), and
 * rotate the key's authValue.
 */
import { parseArgs } from 'node:util';
import { adviceFor, TpmError } from '../../tpm/errors.js';
import { toHex } from '../../tpm/key-store.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { rotateKeyAuth } from '../../tpm/rotate-auth.js';
import { DEFAULT_TCTI } from '../../tpm/tpm-connection.js';
import { DEFAULT_KEY_HANDLE, handleHex, noAuthAdvice, noDAAdvice, parseHandle, TpmKeyStore } from '../../tpm/tpm-key-store.js';
import { write, type CliIO } from '../../common/cli-io.js';

const DEFAULT_STATE_DIR = '/var/lib/gatehouse';

const HELP = `Usage: gatehouse tpm <command> [options]

Commands:
  provision   create the gateway key in the TPM and record it in the state directory
  show        print the gateway public key (PEM) and its thumbprint
  rotate-auth replace the key's authorization value (same key)

Run \`gatehouse tpm <command> --help\` for the options of each command.
`;

const PROVISION_HELP = `Usage: gatehouse tpm provision [--tcti S] [--handle H] [--state-dir D] [--force] [--json]

Creates an ECDSA P-256 signing key inside the TPM (owner hierarchy, fixedTPM, not
exportable, noDA: not blocked by a dictionary-attack lockout) with a random authorization
value kept in the state directory (tpm-key-auth.json, mode 0600: run this as the service
user), persists it at the handle and records its thumbprint in the state directory. Running
it again with the recorded key in place changes nothing.

Options:
  --tcti S        TCTI string (default: $GATEHOUSE_TPM_TCTI or ${DEFAULT_TCTI})
  --handle H      persistent handle, 0x81000000-0x817fffff (default ${handleHex(DEFAULT_KEY_HANDLE)})
  --state-dir D   state directory (default: $GATEHOUSE_STATE_DIR or ${DEFAULT_STATE_DIR})
  --force         replace a different key found at the handle, or re-create the recorded
                  key if it lacks noDA or an authorization value (older releases); the
                  old key is destroyed and the
                  gateway's public key changes: register the new one with the backend
  --json          print the result as JSON
  -h, --help      show this help
`;

const ROTATE_HELP = `Usage: gatehouse tpm rotate-auth [--tcti S] [--handle H] [--state-dir D] [--json]

Gives the recorded key a new random authorization value (TPM2_ObjectChangeAuth, then the key
re-persisted at the same handle) and writes it to the state directory's tpm-key-auth.json. The
key, its public key and thumbprint stay the same; the old value stops working. Stop the daemon
first and run it as the service user. A key from an older release without an authorization
value cannot be rotated: \`gatehouse tpm provision --force\` re-creates it with one.

Options:
  --tcti S        TCTI string (default: $GATEHOUSE_TPM_TCTI or ${DEFAULT_TCTI})
  --handle H      persistent handle (default ${handleHex(DEFAULT_KEY_HANDLE)})
  --state-dir D   state directory (default: $GATEHOUSE_STATE_DIR or ${DEFAULT_STATE_DIR})
  --json          print {handle, thumbprint} as JSON
  -h, --help      show this help
`;

const SHOW_HELP = `Usage: gatehouse tpm show [--tcti S] [--handle H] [--state-dir D] [--json]

Prints the public key (PEM) of the key at the handle and its thumbprint (SHA-256 of the DER
SubjectPublicKeyInfo, hex): what you register with the backend for this gateway. Also says
whether the key has noDA (keeps signing during a dictionary-attack lockout).

Options:
  --tcti S        TCTI string (default: $GATEHOUSE_TPM_TCTI or ${DEFAULT_TCTI})
  --handle H      persistent handle (default ${handleHex(DEFAULT_KEY_HANDLE)})
  --state-dir D   also check that the key is the one recorded in this state directory
  --json          print {handle, thumbprint, noDA, publicKeyPem} as JSON
  -h, --help      show this help
`;

function reportError(io: CliIO, err: unknown): number {
  if (err instanceof TpmError) {
    write(io.stderr, `gatehouse tpm: ${err.message} [${err.code}]`);
    const advice = adviceFor(err.code);
    if (advice) write(io.stderr, `hint: ${advice}`);
    return 1;
  }
  write(io.stderr, `gatehouse tpm: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
}

interface Common {
  tcti: string;
  handle: number;
  json: boolean;
}

const COMMON_OPTIONS = {
  tcti: { type: 'string' },
  handle: { type: 'string' },
  'state-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function common(values: { tcti?: string; handle?: string; json?: boolean }, io: CliIO): Common {
  return {
    tcti: values.tcti ?? io.env.GATEHOUSE_TPM_TCTI ?? DEFAULT_TCTI,
    handle: values.handle === undefined ? DEFAULT_KEY_HANDLE : parseHandle(values.handle),
    json: values.json ?? false,
  };
}

async function provision(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: { ...COMMON_OPTIONS, force: { type: 'boolean' } }, strict: true, allowPositionals: false });
  if (values.help) {
    write(io.stdout, PROVISION_HELP);
    return 0;
  }
  const c = common(values, io);
  const stateDir = values['state-dir'] ?? io.env.GATEHOUSE_STATE_DIR ?? DEFAULT_STATE_DIR;
  const r = await provisionTpmKey({ tcti: c.tcti, handle: c.handle, stateDir, force: values.force ?? false });
  const thumbprint = toHex(r.thumbprint);
  if (c.json) {
    write(io.stdout, JSON.stringify({ action: r.action, handle: handleHex(r.handle), thumbprint, noDA: r.noDA, publicKeyPem: r.publicKeyPem }));
  } else {
    const what = { created: 'created', replaced: 'created (the previous key was destroyed)', unchanged: 'already provisioned' }[r.action];
    write(io.stdout, `TPM key ${what} at ${handleHex(r.handle)}\nthumbprint: ${thumbprint}\nnoDA: ${r.noDA ? 'yes' : 'no'}\n${r.publicKeyPem}`);
  }
  if (r.previous) {
    write(io.stderr, `note: this replaces the key recorded on ${r.previous.provisionedAt} (thumbprint ${r.previous.thumbprint}); register the new key with the backend`);
  }
  if (!r.noDA) write(io.stderr, `warning: ${noDAAdvice(handleHex(r.handle))}`);
  if (!r.hasAuth) write(io.stderr, `warning: ${noAuthAdvice(handleHex(r.handle))}`);
  return 0;
}

async function rotateAuth(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON_OPTIONS, strict: true, allowPositionals: false });
  if (values.help) {
    write(io.stdout, ROTATE_HELP);
    return 0;
  }
  const c = common(values, io);
  const stateDir = values['state-dir'] ?? io.env.GATEHOUSE_STATE_DIR ?? DEFAULT_STATE_DIR;
  const r = await rotateKeyAuth({ tcti: c.tcti, handle: c.handle, stateDir });
  const thumbprint = toHex(r.thumbprint);
  if (c.json) write(io.stdout, JSON.stringify({ handle: handleHex(r.handle), thumbprint }));
  else write(io.stdout, `TPM key authorization rotated at ${handleHex(r.handle)} (same key)\nthumbprint: ${thumbprint}`);
  return 0;
}

async function show(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON_OPTIONS, strict: true, allowPositionals: false });
  if (values.help) {
    write(io.stdout, SHOW_HELP);
    return 0;
  }
  const c = common(values, io);
  const store = new TpmKeyStore({
    tcti: c.tcti,
    handle: c.handle,
    ...(values['state-dir'] !== undefined ? { stateDir: values['state-dir'] } : {}),
  });
  await store.open();
  try {
    const thumbprint = toHex(store.thumbprint());
    const pem = store.publicKeyPem();
    const noDA = store.noDA();
    if (c.json) write(io.stdout, JSON.stringify({ handle: handleHex(c.handle), thumbprint, noDA, publicKeyPem: pem }));
    else write(io.stdout, `handle: ${handleHex(c.handle)}\nthumbprint: ${thumbprint}\nnoDA: ${noDA ? 'yes' : 'no'}\n${pem}`);
    if (!noDA) write(io.stderr, `warning: ${noDAAdvice(handleHex(c.handle))}`);
  } finally {
    await store.close();
  }
  return 0;
}

/** Entry point of `gatehouse tpm`. Exit codes: 0 ok, 1 failure, 2 usage error. */
export async function run(args: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case 'provision':
        return await provision(rest, io);
      case 'rotate-auth':
        return await rotateAuth(rest, io);
      case 'show':
        return await show(rest, io);
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        write(command === undefined ? io.stderr : io.stdout, HELP);
        return command === undefined ? 2 : 0;
      default:
        write(io.stderr, `gatehouse tpm: unknown command "${command}"\n${HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      write(io.stderr, `gatehouse tpm ${command}: ${err.message}\nRun \`gatehouse tpm ${command} --help\`.`);
      return 2;
    }
    if (err instanceof TpmError && err.code === 'GH_TPM_BAD_CONFIG') {
      write(io.stderr, `gatehouse tpm ${command}: ${err.message}`);
      return 2;
    }
    return reportError(io, err);
  }
}
