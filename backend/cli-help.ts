/** Help texts of `gatehouse-backend` (backend/cli.ts). */

export const DEFAULT_DATA_DIR = './gatehouse-backend-data';

export const HELP = `Usage: gatehouse-backend <command> [options]

The Gatehouse reference backend: verifies hellos for gateways, issues session credentials and
leases, and keeps the registry of gateways and devices: in SQLite in the data directory (the
default, one process), or in PostgreSQL, which any number of serve replicas share.

Commands:
  init                      create the data directory and the backend signing key; print pk_S
  serve                     run the HTTPS API
  gateway add|revoke|list   manage gateways (TPM public keys)
  device add|revoke|list    manage devices (Ed25519 public keys, where they may connect, policy)
  import FILE               add many devices from CSV or JSON, all or nothing
  pki                       make a test/demo CA and server certificate with openssl
  migrate                   bring the store's schema up to this version (PostgreSQL; idempotent)
  check                     report whether the store is reachable and its schema version
  command send|list         issue a signed command to a device (protocol v2); list a device's commands
  telemetry tail            print the newest telemetry records, and with --follow each new one

Every command takes --data-dir D (default: $GATEHOUSE_BACKEND_DATA_DIR or ${DEFAULT_DATA_DIR})
and answers --help. Commands that use the registry take --store URL: sqlite:PATH or
postgres://USER[:PASSWORD]@HOST:PORT/DB (default: $GATEHOUSE_BACKEND_STORE, else
sqlite:<data dir>/registry.sqlite).
`;

export const HELPS: Record<string, string> = {
  init: `Usage: gatehouse-backend init [--data-dir D] [--json]

Creates the data directory (0700), the registry and the backend's Ed25519 signing key
(backend-signing-key.pem, mode 0600) unless it exists, and prints the public key pk_S (hex and
base64) and its key id kid_S: what peripherals are provisioned with.
`,
  serve: `Usage: gatehouse-backend serve --cert FILE --key FILE --public-origin URL [options]

Options:
  --cert FILE               TLS certificate chain (PEM)
  --key FILE                TLS private key (PEM)
  --public-origin URL       required: the https://host[:port] gateways are configured with. Every
                            request's signed @target-uri must name it; the Host header is never
                            used, so a request signed for another deployment is refused
  --host H                  listen address (default 127.0.0.1)
  --port N                  listen port (default 8443; 0 picks a free one)
  --lease-seconds N         lease lifetime (default 86400)
  --max-session-seconds N   cap on a gateway session credential's lifetime (default 172800)
  --grant-life-seconds N    protocol-v2 grant life: the longest peripheral session (default 86400)
  --nonces-per-key N        live request nonces one key may hold before its requests are
                            answered 503 busy (default 300000; other keys are unaffected)
  --data-dir D              data directory (made 0700 on every start): the signing key
  --store URL               sqlite:PATH or postgres://… (default sqlite:<data dir>/registry.sqlite);
                            a PostgreSQL database must be migrated first (gatehouse-backend migrate)
  --store-pool N            PostgreSQL connections this process holds at most (default 10)
  --log-level L             error|warn|info|debug (default info)

Request nonces are kept in the store, so a request captured before a restart is still refused
after it, and on PostgreSQL a request used at one replica is refused at every other. While the
store cannot be reached, requests are answered 503 with Retry-After (the gateway retries).
Replicas share one PostgreSQL database and one signing key (copy backend-signing-key.pem).
`,
  migrate: `Usage: gatehouse-backend migrate [--store URL] [--data-dir D] [--json]

Applies the schema migrations the store lacks, each in its own transaction under a lock (two
runs at once apply each once). Running it again changes nothing. Refuses a database whose schema
is newer than this backend (GH_STORE_SCHEMA_NEWER): upgrade the backend instead. A SQLite file
is created and upgraded whenever it is opened; migrate reports its version.
`,
  check: `Usage: gatehouse-backend check [--store URL] [--data-dir D] [--json]

Connects to the store and reports whether it is reachable and its schema version against this
backend's. Exit 0 when reachable and current, 1 otherwise (the problem and its GH_ code on stderr).
`,
  gateway: `Usage:
  gatehouse-backend gateway add --gw ID --tpm-public-key FILE [--groups a,b]
  gatehouse-backend gateway revoke --gw ID
  gatehouse-backend gateway list [--json]

--tpm-public-key takes the output of \`gatehouse tpm show\` (text or --json) or a PEM file.
Revoking a gateway refuses all its further requests and forgets its session keys.
`,
  device: `Usage:
  gatehouse-backend device add --dev ID --public-key KEY --gateways LIST [--policy JSON]
  gatehouse-backend device revoke --dev ID
  gatehouse-backend device list [--json]

KEY: 64 hex digits, base64 of the 32 raw bytes, or a PEM file (Ed25519 SPKI).
LIST: gateway ids, group:<name> or * (any gateway), separated by commas.
JSON: {"pub": [...], "sub": [...]} MQTT topic filters, {dev} stands for the device id
      (default {"pub":["devices/{dev}/#"],"sub":["devices/{dev}/cmd/#"]}).
A revoked device is listed in the revocation feed the gateways poll.
`,
  import: `Usage: gatehouse-backend import FILE [--format csv|json] [--data-dir D]

CSV: a header row with dev,public_key (or publicKey),gateways[,policy]; gateways separated by
; or spaces.
JSON: an array of {"dev","publicKey","gateways":[...],"policy"?}, or one such object per line.
Every record is checked first; if any is bad, nothing is imported and each bad line is reported.
`,
  command: `Usage:
  gatehouse-backend command send DEV TOPIC BODY [--ttl S] [--json]
  gatehouse-backend command list DEV [--json]

send signs a protocol-v2 command with the backend key (from the data directory), bound to the hh
of the device's newest grant, and queues it for that grant's gateway until now + S seconds
(default 3600, at most 604800). BODY is text (UTF-8), at most 800 bytes; TOPIC a topic name
(1-128 bytes, no wildcard). Prints the cid. A device that never had a v2 session has no grant
and gets no command (GH_COMMAND_NO_GRANT). When the device is verified again, S re-signs its
open commands for the new session (same cid).
list prints each command with its state: queued (not yet fetched by its gateway), relayed
(fetched by the gateway of its newest signing), done or failed (the first such ack, kept),
expired; and how many times the peripheral answered refused (that does not close it).
`,
  telemetry: `Usage: gatehouse-backend telemetry tail [DEV] [--follow|-f] [--lines|-n N] [--json]

Prints the newest N (default 20) telemetry records, of DEV only when given, oldest first: when
the gateway received it, device, gateway, topic, body (quoted text, or b64: base64url when not
printable UTF-8), session id, seq, mid. --follow then prints each new record as it is stored
(checked once a second) until interrupted.
`,
  pki: `Usage: gatehouse-backend pki --dns NAME[,NAME...] [--ip IP[,IP...]] [--out DIR | --data-dir D]

Makes a test/demo PKI with openssl in DIR (default: the data directory's pki/): ca.pem/ca.key,
server.pem/server.key for the names, and hostile variants for TLS tests. Not for production.
`,
};
