/**
 * The Gatehouse config schema: every option of /etc/gatehouse/gatehouse.yaml with its type,
 * default and description. docs/configuration.md is generated from this (see docs.ts) and a
 * test keeps the two in agreement.
 */
import { bool, int, intSet, num, oneOf, optStr, section, str, type Infer } from './schema-dsl.js';

/** protocol-v1 "Ids": 1–64 characters of [A-Za-z0-9._:-]. */
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;
const ABS_PATH_RE = /^\/[^\0]*$/;
const HOST_RE = /^[A-Za-z0-9.:_-]{1,253}$/;
const GROUP_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

function isBase64Url32(s: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(s) && Buffer.from(s, 'base64url').length === 32;
}

function isHttpsUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' && u.username === '' && u.password === '' && u.hash === '';
  } catch {
    return false;
  }
}

const port = (description: string, dflt: number) => int({ description, default: dflt, min: 1, max: 65535 });
const absPath = (description: string, dflt: string) =>
  str({ description, default: dflt, pattern: ABS_PATH_RE, typeName: 'absolute path' });
const optPath = (description: string) => optStr({ description, pattern: ABS_PATH_RE, typeName: 'absolute path' });

export const CONFIG_SCHEMA = section('Gatehouse daemon configuration', {
  gateway: section('This gateway', {
    id: str({
      description: 'Gateway id `gw` as registered at the backend (protocol-v1: 1–64 of `[A-Za-z0-9._:-]`).',
      pattern: ID_RE,
      typeName: 'id (1-64 of [A-Za-z0-9._:-])',
    }),
    production: bool({
      description: 'Production mode: refuses the software key store and other test-only settings.',
      default: false,
    }),
    stateDir: absPath('Persistent state (lease cache, revocation cursor). systemd StateDirectory.', '/var/lib/gatehouse'),
    runtimeDir: absPath('Runtime files. systemd RuntimeDirectory.', '/run/gatehouse'),
  }),
  tpm: section('The identity key store', {
    kind: oneOf(['tpm', 'software'] as const, {
      description: '`tpm`: key inside a TPM 2.0 through libtss2. `software`: in-memory key for demos and tests only.',
      default: 'tpm',
    }),
    tcti: str({
      description: 'TSS2 TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:port=2321`.',
      default: 'device:/dev/tpmrm0',
      pattern: /^[a-z][a-z0-9-]*(?::[^\0]*)?$/,
      typeName: 'TCTI string',
    }),
    handle: str({
      description: 'Persistent handle of the gateway key (owner persistent range 0x81000000–0x817FFFFF).',
      default: '0x81010001',
      pattern: /^0x81[0-7][0-9a-fA-F]{5}$/,
      typeName: 'persistent handle 0x81000000..0x817FFFFF',
    }),
    signRatePerSec: num({
      description:
        'Sustained TPM signatures per second after a burst of 10 (token bucket); the default 0.1 is one every 10 s, the key store\'s own default. ' +
        'The TPM signs once per session renewal (every 12 h by default, at most every 150 s) plus backed-off retries, so this is ample; ' +
        'a higher rate only lets a compromised process get more signed (TPM-FAIL-style timing attacks need thousands of signatures). See docs/tpm.md.',
      default: 0.1,
      min: 0.01,
      max: 50,
    }),
  }),
  backend: section('The backend (HTTPS)', {
    url: str({
      description: 'Backend base URL. Must be `https://`.',
      typeName: 'https:// URL',
      test: isHttpsUrl,
    }),
    caFile: optPath('PEM CA bundle to verify the backend; the system store when absent.'),
    serverName: optStr({
      description: 'Name the backend certificate must carry; the URL host when absent.',
      pattern: HOST_RE,
      typeName: 'host name',
    }),
    pinSha256: optStr({
      description: 'Optional pin: SHA-256 of the backend certificate SubjectPublicKeyInfo, 64 hex digits.',
      pattern: /^[0-9a-fA-F]{64}$/,
      typeName: '64 hex digits',
    }),
    connectTimeoutMs: int({ description: 'TCP+TLS connect timeout.', default: 5000, min: 100, max: 60000 }),
    requestTimeoutMs: int({ description: 'Whole-request timeout.', default: 10000, min: 100, max: 120000 }),
    batch: section('Batching of hellos into one `POST /v1/verify`', {
      maxSize: int({ description: 'Hellos per request (protocol-v1: at most 256).', default: 64, min: 1, max: 256 }),
      maxWaitMs: int({ description: 'How long a hello may wait for a batch to fill while another batch is in flight.', default: 10, min: 0, max: 1000 }),
      flushWhenIdle: bool({
        description: 'A hello that finds no batch in flight is sent at once (with the others of that event-loop turn) instead of waiting `maxWaitMs`.',
        default: true,
      }),
    }),
    maxInFlight: int({ description: 'Concurrent requests to the backend.', default: 4, min: 1, max: 64 }),
    queueLimit: int({
      description: 'Hellos waiting for the backend; beyond it hellos are rejected `busy`.',
      default: 1024,
      min: 1,
      max: 100000,
    }),
    backendPublicKey: str({
      description: 'The backend signing key `pk_S`: raw Ed25519, base64url without padding (43 characters).',
      typeName: 'base64url of 32 bytes',
      test: isBase64Url32,
    }),
    backendKid: str({
      description: 'Key id `kid_S` of `backendPublicKey`.',
      pattern: ID_RE,
      typeName: 'id (1-64 of [A-Za-z0-9._:-])',
    }),
    sessionLifetimeSec: int({
      description: 'Requested session key lifetime; renewed at half-life (protocol-v1 default 24 h).',
      default: 86400,
      min: 300,
      max: 604800,
    }),
    revocationPollSec: int({ description: 'Interval of `GET /v1/gateways/{gw}/revocations`.', default: 30, min: 1, max: 3600 }),
    revocations: section('Revocation feed', {
      maxFailedPolls: int({
        description: 'Revocation polls failed in a row after which offline welcomes are refused (backend-unavailable) until a poll succeeds: a backend blocked for longer cannot hide a revocation behind a cached lease.',
        default: 3,
        min: 1,
        max: 1000,
      }),
    }),
    leaseCache: section('Leases cached for offline decisions', {
      enabled: bool({ description: 'Allow offline welcomes under cached leases.', default: true }),
      maxEntries: int({ description: 'Leases kept; the oldest are dropped beyond it.', default: 10000, min: 1, max: 1000000 }),
    }),
    circuit: section('Circuit breaker towards the backend', {
      failureThreshold: int({ description: 'Consecutive failures that open the circuit.', default: 5, min: 1, max: 1000 }),
      openMs: int({ description: 'Time the circuit stays open before a trial request.', default: 10000, min: 100, max: 600000 }),
    }),
  }),
  mqtt: section('The embedded MQTT broker', {
    tcp: section('Plain TCP listener', {
      enabled: bool({ description: 'Listen on plain TCP.', default: true }),
      host: str({ description: 'Address to bind.', default: '127.0.0.1', pattern: HOST_RE, typeName: 'host or address' }),
      port: port('TCP port.', 1883),
    }),
    tls: section('TLS listener', {
      enabled: bool({ description: 'Listen on TLS (needs certFile and keyFile).', default: false }),
      host: str({ description: 'Address to bind.', default: '0.0.0.0', pattern: HOST_RE, typeName: 'host or address' }),
      port: port('TLS port.', 8883),
      certFile: optPath('PEM certificate chain of the listener.'),
      keyFile: optPath('PEM private key of the listener; keep it root:gatehouse 0640 or stricter.'),
    }),
    maxConnections: int({
      description: 'Concurrent MQTT connections; beyond it a new one gets CONNACK 3 (server unavailable). Each costs one file descriptor: keep it below the unit\'s LimitNOFILE (docs/operations.md, `gatehouse check` fd-limit).',
      default: 1000,
      min: 1,
      max: 100000,
    }),
    maxUnwelcomed: int({
      description: 'Of those, connections not yet welcomed (at most maxConnections take effect); beyond it CONNACK 3. Idle unauthenticated clients cannot hold the slots of welcomed ones.',
      default: 500,
      min: 1,
      max: 100000,
    }),
    maxConnectionsPerSource: int({
      description: 'Open connections from one source address (pre-CONNECT included); beyond it a new one is closed at accept. Raise it for peripherals behind NAT.',
      default: 64,
      min: 1,
      max: 100000,
    }),
    acceptsPerSourcePerSec: int({ description: 'New connections per second from one source address (burst the same); beyond it closed at accept.', default: 50, min: 1, max: 100000 }),
    maxPacketBytes: int({
      description: 'Largest MQTT packet accepted (auth messages are at most 1024 bytes).',
      default: 65536,
      min: 2048,
      max: 16777216,
    }),
    authTimeoutSec: int({ description: 'A connection not welcomed within this is closed (protocol-v1: 60 s).', default: 60, min: 1, max: 3600 }),
    connectTimeoutSec: int({ description: 'Time allowed between TCP accept and CONNECT.', default: 10, min: 1, max: 300 }),
    keepaliveMaxSec: int({ description: 'Largest keepalive a client may ask for.', default: 300, min: 10, max: 65535 }),
    maxUnwelcomedPerDevice: int({
      description: 'Connections not yet welcomed that may be bound to one device at once (bound by what they publish); a further one publishing for that device is closed.',
      default: 4,
      min: 1,
      max: 64,
    }),
  }),
  ble: section('The BLE transport (gateway is the GATT client)', {
    enabled: bool({ description: 'Scan for and authenticate BLE peripherals.', default: false }),
    maxConcurrent: int({ description: 'Simultaneous BLE exchanges.', default: 2, min: 1, max: 16 }),
    exchangeTimeoutMs: int({ description: 'Whole exchange, connect to disconnect.', default: 15000, min: 1000, max: 120000 }),
    denyList: section('Back-off for peripherals that fail or are rejected', {
      baseBackoffSec: int({ description: 'First back-off.', default: 30, min: 1, max: 86400 }),
      maxBackoffSec: int({ description: 'Back-off cap (doubles up to it).', default: 3600, min: 1, max: 604800 }),
    }),
    scanLog: section('What `gatehouse scan` shows: the nearby peripherals the transport heard', {
      maxEntries: int({ description: 'Addresses kept at most; the least recently heard is dropped.', default: 256, min: 1, max: 4096 }),
      ttlSec: int({ description: 'An address not heard for this long is forgotten.', default: 300, min: 1, max: 86400 }),
    }),
  }),
  protocol: section('Protocol versions and the v2 session', {
    versions: intSet([1, 2] as const, {
      description: 'Protocol versions answered. A message of a version not listed is answered with a reject `unsupported-version` (protocol-v2 "Negotiation").',
      default: [1, 2],
    }),
    maxSessionAgeSec: int({ description: 'Longest session: a v2 welcome\'s `life` is at most this, the grant\'s `life` and the lease\'s remaining time; a v1 MQTT connection is closed at this or its lease\'s `exp`, whichever comes first.', default: 86400, min: 60, max: 31536000 }),
    firstFrameTimeoutSec: int({ description: 'A v2 session with no frame that decrypts within this after the welcome ends (`bye idle`); protocol-v2: never below 60 s.', default: 60, min: 60, max: 3600 }),
  }),
  dataPlane: section('The v2 data plane: telemetry queued durably for the backend, commands relayed to devices', {
    queue: section('The durable upstream queue (`uplink.db` in the state directory)', {
      maxBytes: int({
        description:
          'Bytes of telemetry the queue holds; beyond it pubs are answered `busy`. 64 MiB is about 90,000 full-size (1,024-byte) records or ~1,000,000 small ones: a day of 50 devices publishing a small record every 5 s, on any SD card, leaving room for the WAL and the rest of the state directory.',
        default: 67108864,
        min: 65536,
        max: 17179869184,
      }),
      maxAgeSec: int({
        description: 'Records older than this are deleted unsent (counted and logged): a week covers a long weekend without a backend and is within what the backend accepts for a lease lifetime.',
        default: 604800,
        min: 3600,
        max: 31536000,
      }),
      busyRetrySec: int({ description: '`retry` of a busy receipt: a device waits this long before it sends telemetry again.', default: 30, min: 1, max: 3600 }),
    }),
    publishLocal: bool({ description: 'Also publish each stored pub on the embedded broker for local subscribers.', default: true }),
    msgQueuePerSession: int({
      description:
        'Broker messages one v2 session holds waiting to go out as `msg` frames (protocol-v2 "msg"), behind the one being sent; a message arriving when they are all taken is dropped for that session and counted (`gatehouse_v2_msgs_total{outcome="full"}`), so a slow device never holds up the broker or the others. 64 full-size frames are ~80 KB per session.',
      default: 64,
      min: 1,
      max: 4096,
    }),
    commands: section('Commands from the backend', {
      waitSec: int({ description: 'Long-poll wait of `GET /v1/gateways/{gw}/commands` (protocol-v2: at most 30 s).', default: 25, min: 1, max: 30 }),
      maxPerDevice: int({ description: 'Commands held per device until acknowledged or expired; further ones are refused (logged).', default: 16, min: 1, max: 1024 }),
    }),
  }),
  pipeline: section('The authentication pipeline', {
    challengeTtlSec: int({ description: 'Lifetime of an outstanding challenge (protocol-v1: 30 s).', default: 30, min: 1, max: 600 }),
    maxOutstandingChallenges: int({ description: 'Challenges outstanding at once, all connections.', default: 10000, min: 1, max: 1000000 }),
    maxPendingHellos: int({ description: 'Hellos being decided at once; beyond it `busy`.', default: 1024, min: 1, max: 100000 }),
    rateLimits: section('Token buckets (requests per minute, burst = the same number); reloaded on SIGHUP', {
      perConnectionPerMin: int({ description: 'Challenges+hellos per connection.', default: 20, min: 1, max: 100000 }),
      perDevicePerMin: int({ description: 'Challenges+hellos per device id.', default: 20, min: 1, max: 100000 }),
      globalPerMin: int({ description: 'Challenges+hellos for the whole gateway (an auth is two; the default allows a reconnect storm of ~4,000 auths/s).', default: 480000, min: 1, max: 10000000 }),
    }),
  }),
  status: section('The local status socket', {
    socketPath: absPath('Unix socket of the status API (HTTP/1.1).', '/run/gatehouse/status.sock'),
    group: str({ description: 'Group allowed to read status (socket mode 0660).', default: 'gatehouse-status', pattern: GROUP_RE, typeName: 'group name' }),
    eventRingSize: int({ description: 'Decision events kept for `/v1/events`.', default: 1000, min: 16, max: 100000 }),
  }),
  log: section('Logging', {
    level: oneOf(['error', 'warn', 'info', 'debug'] as const, { description: 'Least severe level logged; reloaded on SIGHUP.', default: 'info' }),
    format: oneOf(['text', 'json'] as const, { description: 'Line format (under systemd, lines also carry journald priority prefixes).', default: 'text' }),
  }),
});

/** The validated configuration. */
export type GatehouseConfig = Infer<typeof CONFIG_SCHEMA>;

/** Where the daemon and the CLI look for the config by default. */
export const DEFAULT_CONFIG_PATH = '/etc/gatehouse/gatehouse.yaml';
