#!/usr/bin/env bash
# Installs the Debian 12 packages Stoa needs to build, test, bench and fuzz.
# Checks with dpkg first and touches apt only when something is missing.
# Not root and no usable sudo: prints what is missing and carries on.
# OPTIONAL_PACKAGES are tried after the required ones; one that cannot be
# installed (not in the configured apt sources, no network) is reported and
# skipped, and the script still succeeds.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config python3
  clang libclang-rt-14-dev clang-format
  libgtest-dev libgmock-dev librapidcheck-dev libbenchmark-dev
  libxxhash-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  liblmdb-dev liburcu-dev libboost-dev libsqlite3-dev libzmq3-dev
)
# gnuplot-nox: bench/plot_sweep.py (make bench-sweep's SVGs, the plot check in
# the bench_sweep_* tests). Nothing else needs it.
OPTIONAL_PACKAGES=(gnuplot-nox)

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: no dpkg here (not Debian?); install these yourself: ${PACKAGES[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
optional=()
for pkg in "${OPTIONAL_PACKAGES[@]}"; do
  installed "$pkg" || optional+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 && ${#optional[@]} -eq 0 ]]; then
  echo "deps: all ${#PACKAGES[@]} packages present (and the optional ${OPTIONAL_PACKAGES[*]})"
  exit 0
fi
[[ ${#missing[@]} -eq 0 ]] || echo "deps: missing: ${missing[*]}"
[[ ${#optional[@]} -eq 0 ]] || echo "deps: optional, missing: ${optional[*]}"

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
  SUDO=(sudo)
else
  echo "deps: not root and no sudo; install them with:" >&2
  [[ ${#missing[@]} -eq 0 ]] || echo "  apt-get install -y ${missing[*]}" >&2
  [[ ${#optional[@]} -eq 0 ]] || echo "  apt-get install -y ${optional[*]}  # optional" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [[ ${#missing[@]} -gt 0 ]]; then
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  echo "deps: installed ${missing[*]}"
fi
for pkg in "${optional[@]}"; do
  # Only what the configured sources offer; a failure is not fatal.
  if [[ -z "$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]] &&
    ! { "${SUDO[@]}" apt-get update >/dev/null 2>&1 &&
      [[ -n "$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }; then
    echo "deps: optional $pkg is not in the apt sources; skipped (bench/plot_sweep.py needs gnuplot)"
    continue
  fi
  if "${SUDO[@]}" apt-get install -y --no-install-recommends "$pkg"; then
    echo "deps: installed optional $pkg"
  else
    echo "deps: optional $pkg could not be installed; skipped"
  fi
done
