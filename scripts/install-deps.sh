#!/usr/bin/env bash
# Installs the Debian 12 packages Stoa needs to build, test, bench and fuzz.
# Checks with dpkg first and touches apt only when something is missing.
# Not root and no usable sudo: prints what is missing and carries on.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config python3
  clang libclang-rt-14-dev clang-format
  libgtest-dev libgmock-dev librapidcheck-dev libbenchmark-dev
  libxxhash-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  liblmdb-dev liburcu-dev libboost-dev libsqlite3-dev
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: no dpkg here (not Debian?); install these yourself: ${PACKAGES[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "deps: missing: ${missing[*]}"

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
  SUDO=(sudo)
else
  echo "deps: not root and no sudo; install them with:" >&2
  echo "  apt-get install -y ${missing[*]}" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps: installed ${missing[*]}"
