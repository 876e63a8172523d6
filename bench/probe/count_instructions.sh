#!/usr/bin/env bash
# Instructions per scanned key and per get of stoa-read-probe, counted by
# callgrind (deterministic: compare two builds without the VM's noise).
# Usage: bench/probe/count_instructions.sh [BUILD_DIR] [N]
set -euo pipefail
build=${1:-build}
n=${2:-200000}
probe="$build/bench/stoa-read-probe"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[ -x "$probe" ] || { echo "no $probe: ninja -C $build stoa-read-probe" >&2; exit 2; }
tmp=$(mktemp -d /tmp/stoa-probe.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$probe" "$tmp/store" "$n" >/dev/null 2>"$tmp/log" ||
  { cat "$tmp/log" >&2; exit 1; }
callgrind_annotate --inclusive=yes "$tmp/cg.out" | awk '
  /do_scans\(stoa::Txn&/ && /\[/ { gsub(",", "", $1); printf "instructions per scanned key: %.0f\n", $1 / 100000 }
  /do_gets\(stoa::Txn&/ && /\[/ { gsub(",", "", $1); printf "instructions per get: %.0f\n", $1 / 100000 }'
