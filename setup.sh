#!/usr/bin/env bash
# Gatehouse: set up a fresh Debian 12 machine and run the gateway on embedded defaults
# (gateway + embedded reference backend + swtpm key store + simulated MQTT peripherals).
#
#   ./setup.sh            set up, then serve until Ctrl-C
#   ./setup.sh --once     set up, authenticate the simulated peripherals once, print the summary, exit
#                         (exit 0 only if every simulated peripheral was welcomed and verified its welcome)
#
# Everything a test or the demo needs is installed here; nothing by hand.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_node_major=20
if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js >= ${need_node_major} is required (not found). Install Node.js 20 LTS first." >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt "$need_node_major" ]; then
  echo "setup: Node.js >= ${need_node_major} is required, found $(node --version)." >&2
  exit 1
fi

# Debian packages: swtpm + tpm2-tss (the TPM and its FFI target), tpm2-tools (cross-checks in tests),
# mosquitto clients (third-party MQTT clients in tests), openssl (test/demo PKI), curl (status socket),
# util-linux (setpriv: status-socket permission test, and the demo's children die with it), iproute2 (ss: listen-backlog test),
# build tools for native npm modules, python3-venv (the Bumble BLE test stack's virtual environment),
# and for the .deb and its system tests (test/system): systemd-container (systemd-nspawn),
# debootstrap, dpkg-dev, fakeroot, lintian.
# postgresql (the backend's PostgreSQL store: tests start a private server as user nobody, testkit/postgres.ts).
DEBIAN_PACKAGES=(
  swtpm swtpm-tools tpm2-tools
  libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-rc0 libtss2-tcti-swtpm0 libtss2-tcti-device0
  mosquitto-clients openssl curl ca-certificates util-linux procps iproute2 python3 python3-venv make g++
  systemd-container debootstrap dpkg-dev fakeroot lintian postgresql
)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The BLE test stack (docs/ble.md): Bumble's virtual controllers and the Python peripheral, in a
# project-local virtual environment. Idempotent: the venv is made once, pip skips what is installed.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the Python virtual environment .venv"
  python3 -m venv .venv
fi
echo "setup: installing Python packages (requirements.txt) into .venv"
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

echo "setup: installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund --loglevel=error
echo "setup: building"
npm run --silent build

exec node dist/cli/gatehouse.js demo "$@"
