#!/usr/bin/env bash
# Builds (once per machine) the Debian 12 tree the system tests boot with systemd-nspawn, and
# prints its path. The tree lives outside the repository, under $GATEHOUSE_TEST_CACHE
# (default /var/cache/gatehouse-test), named after what it contains, so a change of the package
# list below builds a new one. A lock serialises concurrent runs; a half-built tree is never used
# (it is built beside its final name and renamed when complete).
#
# What the tree holds: debootstrap's minbase, systemd as PID 1 with D-Bus and logind, and the
# packages the Gatehouse package depends on (libtss2, procps), so that installing the .deb in the
# booted container needs no network. Node.js is not installed: bookworm's nodejs is 18, below the
# package's floor; the tests bind-mount the host's node (>= 20.19) at /usr/bin/node.
set -euo pipefail

cache=${GATEHOUSE_TEST_CACHE:-/var/cache/gatehouse-test}
packages=systemd,systemd-sysv,dbus,libpam-systemd,procps,libtss2-esys-3.0.2-0,libtss2-tctildr0,libtss2-mu0,libtss2-rc0,libtss2-tcti-swtpm0,libtss2-tcti-device0
stamp=$(printf '%s' "bookworm minbase $packages" | sha256sum | cut -c1-12)
tree="$cache/bookworm-tree-$stamp"

for tool in debootstrap flock; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bookworm-tree: $tool is missing (./setup.sh installs debootstrap)" >&2; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { echo "bookworm-tree: must run as root" >&2; exit 3; }

# The Debian mirror this machine already uses (deb822 .sources or a one-line sources.list).
mirror() {
  local f u
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    u=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    if [ -n "$u" ]; then echo "$u"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    u=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' "$f")
    if [ -n "$u" ]; then echo "$u"; return; fi
  done
  echo http://deb.debian.org/debian
}

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 600 9 || { echo "bookworm-tree: timed out waiting for $cache/lock" >&2; exit 1; }
if [ ! -f "$tree/.gatehouse-complete" ]; then
  # Trees of other package lists are of no further use.
  rm -rf "$cache"/bookworm-tree-*
  url=$(mirror)
  echo "bookworm-tree: building $tree from $url (once per machine, about a minute)" >&2
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$tree.partial" "$url" >"$cache/debootstrap.log" 2>&1; then
    tail -20 "$cache/debootstrap.log" >&2
    rm -rf "$tree.partial"
    echo "bookworm-tree: debootstrap failed (log: $cache/debootstrap.log)" >&2
    exit 1
  fi
  # apt's caches are not needed to boot; keep the tree small.
  rm -rf "$tree.partial/var/cache/apt/archives/"*.deb "$tree.partial/var/lib/apt/lists/"*
  # No getty on a pipe console, and nothing that waits for a network the container doesn't manage.
  ln -sf /dev/null "$tree.partial/etc/systemd/system/console-getty.service"
  ln -sf /dev/null "$tree.partial/etc/systemd/system/systemd-networkd-wait-online.service"
  echo gatehouse-test >"$tree.partial/etc/hostname"
  touch "$tree.partial/.gatehouse-complete"
  mv "$tree.partial" "$tree"
fi
echo "$tree"
