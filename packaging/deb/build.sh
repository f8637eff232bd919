#!/usr/bin/env bash
# Builds the Gatehouse Debian package from this checkout: `npm run deb` (docs/operations.md "Install
# from the .deb"). Network: the npm registry only (npm ci --omit=dev in a staging dir).
#
#   packaging/deb/build.sh [--out DIR] [--skip-build] [--no-lintian]
#
#   --out DIR      where the .deb goes (default: dist-deb/ in the checkout)
#   --skip-build   use the existing dist/ (npm run build already ran)
#   --no-lintian   do not run lintian on the result (it runs when installed)
#   --fast         gzip -1 instead of xz (the system tests; same contents)
#
# Prints the path of the .deb on its last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out="$src/dist-deb"
skip_build=0
run_lintian=1
compress=(-Zxz -z6)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --no-lintian) run_lintian=0; shift ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    --help|-h) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deb: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps fakeroot node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deb: $tool is missing (./setup.sh installs dpkg-dev and fakeroot)" >&2; exit 1; }
done

prefix=/usr/lib/gatehouse
pkg=gatehouse
version=$(node -p "require('$src/package.json').version")
revision=1
arch=$(dpkg --print-architecture)
# The binaries' paths inside the package come from package.json "bin", never from here.
bin_json=$(node -p "JSON.stringify(require('$src/package.json').bin)")

log() { echo "deb: $*" >&2; }

if [ "$skip_build" -eq 0 ]; then
  log "npm run build"
  (cd "$src" && npm run --silent build) >&2
fi
for b in $(node -p "Object.values($bin_json).join(' ')"); do
  [ -f "$src/$b" ] || { log "$src/$b (package.json bin) is missing: run npm run build"; exit 1; }
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
umask 022

# --- the program: dist/ and its production dependencies.
install -d "$root$prefix"
cp -R "$src/dist" "$root$prefix/dist"
install -m 0644 "$src/package.json" "$src/package-lock.json" "$root$prefix/"
# npm ci --omit=dev compiles better-sqlite3 and the BLE addons (~1.5 min here): its result is kept
# in $out/.modules-<hash of the lock file, node ABI, arch> and reused while those do not change.
key=$( (cat "$src/package-lock.json"; node -p 'process.versions.modules + " " + process.arch + " " + process.platform') | sha256sum | cut -c1-16)
cache="$out/.modules-$key"
if [ ! -d "$cache/node_modules" ]; then
  log "npm ci --omit=dev (production dependencies, with the optional BLE stack)"
  rm -rf "$out"/.modules-*
  mkdir -p "$cache.partial"
  install -m 0644 "$src/package.json" "$src/package-lock.json" "$cache.partial/"
  (cd "$cache.partial" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) >&2
  mv "$cache.partial" "$cache"
fi
cp -R "$cache/node_modules" "$root$prefix/node_modules"
nm="$root$prefix/node_modules"
# Build leftovers, sources of native code and files for other systems that npm packages carry:
# not needed at run time (docs/operations.md "lintian"). node-gyp is the addons' build tool (a
# dependency of their install scripts); the addons are built by now.
find "$nm" \( -name obj.target -o -name .deps -o -name '*.o' -o -name '*.a' -o -name Makefile -o -name '*.mk' \
  -o -name config.gypi -o -name '.npmignore' -o -name '.eslintrc*' -o -name '.gitattributes' -o -name '.gitignore' \
  -o -name '.travis.yml' -o -name '*~' \) -prune -exec rm -rf {} +
rm -rf "$nm/better-sqlite3/build/Release/test_extension.node" "$nm/better-sqlite3/deps" "$nm/better-sqlite3/src" \
  "$nm/usb/libusb" "$nm/node-gyp" "$nm/@abandonware/bluetooth-hci-socket/lib/binding"
# Prebuilt addons for other platforms (usb, serialport, bluetooth-hci-socket ship prebuilds/<platform>-<arch>/).
while IFS= read -r -d '' pb; do
  find "$pb" -mindepth 1 -maxdepth 1 ! -name "linux-$(node -p process.arch)" -exec rm -rf {} +
  find "$pb" -name '*musl*' -delete
done < <(find "$nm" -type d -name prebuilds -print0)
find "$nm/@koromix" -mindepth 2 -maxdepth 2 -name 'musl_*' -exec rm -rf {} + 2>/dev/null || true
# Addons we compiled carry debug symbols; prebuilt ones are already stripped.
find "$nm" -name '*.node' -type f -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +
# Everything readable, nothing writable but by root; executable only what starts with #!.
find "$root$prefix" -type d -exec chmod 0755 {} +
find "$root$prefix" -type f -exec chmod 0644 {} +
find "$root$prefix" -type f ! -name '*.node' -size -2M -print0 | while IFS= read -r -d '' f; do
  if [ "$(head -c2 "$f")" = '#!' ]; then chmod 0755 "$f"; fi
done

# --- commands on the PATH: small wrappers that name the node binary (the unit does too).
install -d "$root/usr/bin"
node -e '
  const bin = JSON.parse(process.argv[1]);
  for (const [name, path] of Object.entries(bin)) console.log(name + " " + path);
' "$bin_json" | while read -r name path; do
  printf '#!/bin/sh\n# %s: installed by the gatehouse package (%s/%s).\nexec /usr/bin/node %s/%s "$@"\n' "$name" "$prefix" "$path" "$prefix" "$path" >"$root/usr/bin/$name"
  chmod 0755 "$root/usr/bin/$name"
done
gatehouse_js=$(node -p "($bin_json).gatehouse")

# --- systemd: the unit (ExecStart names the gatehouse bin), sysusers, tmpfiles, sysctl.
install -d "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" "$root/usr/lib/sysctl.d"
sed -E \
  -e "s|^(ExecStart=/usr/bin/node( --[^ ]+)*) /usr/lib/gatehouse/[^ ]+\\.js |\\1 $prefix/$gatehouse_js |" \
  -e "s|^# Gatehouse gateway daemon\\. Installed by systemd/install\\.sh.*|# Gatehouse gateway daemon. Installed by the gatehouse package; see /usr/share/doc/gatehouse/operations.md.gz.|" \
  -e "s|^Documentation=.*|Documentation=file:/usr/share/doc/gatehouse/operations.md.gz|" \
  "$src/systemd/gatehouse.service" >"$root/lib/systemd/system/gatehouse.service"
grep -q "^ExecStart=/usr/bin/node.* $prefix/$gatehouse_js run " "$root/lib/systemd/system/gatehouse.service" \
  || { log "could not point ExecStart at $prefix/$gatehouse_js"; exit 1; }
install -m 0644 "$src/systemd/gatehouse.sysusers.conf" "$root/usr/lib/sysusers.d/gatehouse.conf"
install -m 0644 "$src/systemd/gatehouse.tmpfiles.conf" "$root/usr/lib/tmpfiles.d/gatehouse.conf"
install -m 0644 "$src/systemd/gatehouse.sysctl.conf" "$root/usr/lib/sysctl.d/90-gatehouse.conf"
# The BLE drop-in, not active: the operator links it into gatehouse.service.d (docs/operations.md).
install -d "$root/usr/share/gatehouse/systemd"
install -m 0644 "$src/systemd/gatehouse-ble.conf" "$root/usr/share/gatehouse/systemd/gatehouse-ble.conf"

# --- the example config: a conffile; the daemon reads gatehouse.yaml, which the operator writes.
install -d "$root/etc/gatehouse"
install -m 0644 "$src/systemd/gatehouse.example.yaml" "$root/etc/gatehouse/gatehouse.example.yaml"

# --- documentation.
doc="$root/usr/share/doc/$pkg"
install -d "$doc"
for f in operations.md configuration.md tpm.md; do
  install -m 0644 "$src/docs/$f" "$doc/$f"
  gzip -9n "$doc/$f"
done
install -m 0644 "$here/copyright" "$doc/copyright"
date_r=$(date -R -d "@$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)")
printf '%s (%s-%s) unstable; urgency=medium\n\n  * Built from the Gatehouse repository (packaging/deb/build.sh).\n\n -- Gatehouse maintainers <gatehouse@example.invalid>  %s\n' \
  "$pkg" "$version" "$revision" "$date_r" | gzip -9n >"$doc/changelog.Debian.gz"
install -d "$root/usr/share/lintian/overrides"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"

# --- control: shared-library dependencies of the native modules, computed.
install -d "$root/DEBIAN"
mapfile -t natives < <(find "$root$prefix/node_modules" -name '*.node' -type f)
shlibs=""
if [ "${#natives[@]}" -gt 0 ]; then
  mkdir -p "$work/shlib/debian"
  printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" >"$work/shlib/debian/control"
  shlibs=$(cd "$work/shlib" && dpkg-shlibdeps -O --ignore-missing-info "${natives[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version-$revision|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@SHLIBS@|${shlibs:+$shlibs, }|" \
  "$here/control" >"$root/DEBIAN/control"
echo /etc/gatehouse/gatehouse.example.yaml >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

deb="$out/${pkg}_${version}-${revision}_${arch}.deb"
# fakeroot: every file owned by root in the archive, whoever builds it.
fakeroot dpkg-deb --build "${compress[@]}" "$root" "$deb" >&2
log "built $deb ($(du -h "$deb" | cut -f1))"
if [ "$run_lintian" -eq 1 ]; then
  if command -v lintian >/dev/null 2>&1; then
    lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" >&2 || { log "lintian found errors"; exit 1; }
  else
    log "lintian not installed: not checked (./setup.sh installs it)"
  fi
fi
echo "$deb"
