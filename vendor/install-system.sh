#!/usr/bin/env bash
# Install the Debian packages of vendor/system-packages.txt that are missing.
# Idempotent and quick: with everything present it only asks dpkg (well under
# a second) and installs nothing. One progress line per step on stderr.
#   as root on Debian: apt-get installs what is missing;
#   otherwise: one line names what is missing; exit 2 if a build package is
#   among them (nothing can be built), 0 if only test packages are (the tests
#   that need them need root too, and skip with a reason).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
list="$here/system-packages.txt"
say() { echo "install-system: $*" >&2; }

mapfile -t lines < <(grep -Ev '^[[:space:]]*(#|$)' "$list")
build=() all=()
for line in "${lines[@]}"; do
  read -r need pkg <<<"$line"
  all+=("$pkg")
  [ "$need" = build ] && build+=("$pkg")
done

if ! command -v dpkg-query >/dev/null 2>&1; then
  say "not a Debian system (no dpkg-query); install the equivalents of: ${all[*]}"
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists fuse3 && exit 0
  say "missing: libfuse3 development files (pkg-config fuse3), needed to build pyfuse3"
  exit 2
fi

missing=()
for pkg in "${all[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  say "all ${#all[@]} system packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  say "missing (run as root, or: sudo apt-get install ${missing[*]})"
  for pkg in "${missing[@]}"; do
    if [[ " ${build[*]} " == *" $pkg "* ]]; then
      say "cannot build without: $pkg"
      exit 2
    fi
  done
  say "only test components are missing; the tests that use them will skip"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -qq
say "installing ${#missing[@]} packages: ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Packages such as kea-dhcp4-server start a system daemon on install; the
# tests start their own instances, in namespaces.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now kea-dhcp4-server nginx >/dev/null 2>&1 || true
fi
say "done"
