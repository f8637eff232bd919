#!/bin/sh
# Install Gatehouse as a systemd service. Run as root from a built checkout (npm ci && npm run build).
#   systemd/install.sh --backend-allow 203.0.113.0/24 --lan-allow 192.168.1.0/24 [--ble]
# Options:
#   --prefix DIR          install the program here (default /usr/lib/gatehouse)
#   --backend-allow LIST  the backend's networks: comma-separated CIDRs (or "any") for IPAddressAllow=
#   --lan-allow LIST      the peripherals' LAN ranges (the unit allows only loopback otherwise)
#   --ble                 enable the BLE drop-in (CAP_NET_RAW for noble's raw HCI socket)
#   --destdir DIR         stage into DIR (packaging, tests): no users, no systemctl, no npm
#   --skip-deps           do not run npm ci --omit=dev in the prefix
#   --help
set -eu

prefix=/usr/lib/gatehouse
destdir=
backend_allow=
lan_allow=
ble=0
skip_deps=0
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --destdir) destdir=${2:?--destdir needs a value}; shift 2 ;;
    --backend-allow) backend_allow=${2:?--backend-allow needs a value}; shift 2 ;;
    --lan-allow) lan_allow=${2:?--lan-allow needs a value}; shift 2 ;;
    --ble) ble=1; shift ;;
    --skip-deps) skip_deps=1; shift ;;
    --help|-h) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
if [ -z "$backend_allow" ]; then
  echo "install.sh: --backend-allow is required: the unit denies all addresses but loopback and the LAN" >&2
  exit 2
fi
# Each entry must look like an address, a CIDR or "any": it is written into a unit file.
for cidr in $(echo "$backend_allow,$lan_allow" | tr ',' ' '); do
  case "$cidr" in
    any) ;;
    *[!0-9A-Fa-f.:/]*|'') echo "install.sh: not an address or CIDR: $cidr" >&2; exit 2 ;;
  esac
done
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --destdir)" >&2
  exit 1
fi

src=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$src/dist/cli/gatehouse.js" ] || { echo "install.sh: $src/dist is missing: run npm ci && npm run build first" >&2; exit 1; }

root=$destdir
umask 022
install -d "$root$prefix" "$root/etc/systemd/system/gatehouse.service.d" \
  "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" "$root/usr/lib/sysctl.d" "$root/usr/bin" "$root/etc/gatehouse" \
  "$root/usr/share/gatehouse/systemd"
rm -rf "$root$prefix/dist"
cp -R "$src/dist" "$root$prefix/dist"
install -m 0644 "$src/package.json" "$src/package-lock.json" "$root$prefix/"
install -d "$root$prefix/docs"
install -m 0644 "$src/docs/operations.md" "$src/docs/configuration.md" "$root$prefix/docs/"
chmod 0755 "$root$prefix/dist/cli/gatehouse.js"
ln -sf "$prefix/dist/cli/gatehouse.js" "$root/usr/bin/gatehouse"

sed "s|/usr/lib/gatehouse/|$prefix/|g" "$src/systemd/gatehouse.service" > "$root/etc/systemd/system/gatehouse.service"
chmod 0644 "$root/etc/systemd/system/gatehouse.service"
{
  echo "# Written by install.sh: the backend's networks and the peripherals' LAN ranges; the unit"
  echo "# allows only loopback (docs/operations.md \"Network allow-list\")."
  echo "[Service]"
  echo "IPAddressAllow=$(echo "$backend_allow" | tr ',' ' ')"
  if [ -n "$lan_allow" ]; then echo "IPAddressAllow=$(echo "$lan_allow" | tr ',' ' ')"; fi
} > "$root/etc/systemd/system/gatehouse.service.d/10-network.conf"
# Earlier releases wrote the backend's networks here; 10-network.conf has them now.
rm -f "$root/etc/systemd/system/gatehouse.service.d/10-backend.conf"
install -m 0644 "$src/systemd/gatehouse-ble.conf" "$root/usr/share/gatehouse/systemd/gatehouse-ble.conf"
if [ "$ble" -eq 1 ]; then
  ln -sf /usr/share/gatehouse/systemd/gatehouse-ble.conf "$root/etc/systemd/system/gatehouse.service.d/ble.conf"
fi
install -m 0644 "$src/systemd/gatehouse.sysusers.conf" "$root/usr/lib/sysusers.d/gatehouse.conf"
install -m 0644 "$src/systemd/gatehouse.tmpfiles.conf" "$root/usr/lib/tmpfiles.d/gatehouse.conf"
install -m 0644 "$src/systemd/gatehouse.sysctl.conf" "$root/usr/lib/sysctl.d/90-gatehouse.conf"
if [ ! -e "$root/etc/gatehouse/gatehouse.yaml" ]; then
  install -m 0640 "$src/systemd/gatehouse.example.yaml" "$root/etc/gatehouse/gatehouse.yaml"
  echo "install.sh: wrote /etc/gatehouse/gatehouse.yaml from the example: edit it, then: gatehouse config check"
fi

if [ -n "$destdir" ]; then
  echo "install.sh: staged into $destdir"
  exit 0
fi

if [ "$skip_deps" -eq 0 ]; then
  (cd "$prefix" && npm ci --omit=dev --no-audit --no-fund)
fi
systemd-sysusers /usr/lib/sysusers.d/gatehouse.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/gatehouse.conf
sysctl -q -p /usr/lib/sysctl.d/90-gatehouse.conf || echo "install.sh: could not apply the sysctl limits now (they apply at the next boot)" >&2
systemctl daemon-reload
echo "install.sh: installed. Next:"
echo "  gatehouse config check && systemctl enable --now gatehouse && gatehouse check"
echo "  usermod -aG gatehouse-status <operator>   # to use gatehouse status without sudo"
