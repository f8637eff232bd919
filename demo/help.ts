/** `gatehouse demo --help`. */
export const HELP = `Usage: gatehouse demo [--once] [--peripherals N] [--dir DIR] [--mqtt-port PORT]
                     [--config FILE] [--print-config] [--backend-process]

Run the whole system on this machine: the reference backend (HTTPS, its own CA made on first
run), swtpm as the TPM, the gateway with MQTT on loopback, and N simulated protocol-v2
peripherals that authenticate over MQTT, verify their welcomes and send 3 telemetry frames each;
the first takes one command and acknowledges it. Prints a summary (frames sent, receipted and
stored at the backend; the command acked), then keeps serving until Ctrl-C so that
\`gatehouse status\` and outside MQTT clients can be pointed at it.

Options:
  --once             exit after the summary: status 0 only if every simulated peripheral was
                     welcomed and verified its welcome, every receipted frame reached the
                     backend's store (waited for up to 15 s) and the command was acknowledged
  --peripherals N    simulated peripherals (default 20, at most 1000)
  --dir DIR          demo state (default ./.gatehouse/demo; the PKI is kept, the rest is fresh each run)
  --mqtt-port PORT   MQTT port (default 1883, or a free port when 1883 is taken)
  --config FILE      YAML overrides merged over the demo's generated config (any option of
                     docs/configuration.md except the ones that wire the demo together: gateway.id,
                     stateDir, runtimeDir, tpm.kind, tpm.tcti, backend.url, caFile, backendPublicKey,
                     backendKid); validated like \`gatehouse run\`'s config, every problem at once.
                     E.g. "pipeline: {rateLimits: {perDevicePerMin: 600, perConnectionPerMin: 600}}"
  --print-config     start the backend and TPM, print the effective config (every option, defaults
                     included) and exit; ports and keys are chosen afresh at each start
  --backend-process  run the reference backend as its own process (gatehouse-backend serve) and
                     print how to stop and restart it, to try a backend outage by hand
  -h, --help         show this help

Signals: SIGINT/SIGTERM stop the demo and everything it started (a second one stops at once);
SIGHUP reloads log.level and pipeline.rateLimits, from --config merged again when given, else
from DIR/gatehouse.yaml (other changes need a restart). The demo's pid file DIR/demo.pid names
its swtpm and backend; a demo that starts after one was killed (kill -9) kills their leftovers.
Exit codes: 0 ok, 1 failure (with --once: a peripheral not welcomed, a frame not stored, the
command not acked; bad --config), 2 usage error.
`;
