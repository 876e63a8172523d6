#!/usr/bin/env bash
# Runs every libFuzzer target found in DIR for SECONDS each, then prints one
# line per target:
#   fuzz coverage: <target> cov=<N> ft=<N> corpus=<N> execs=<N>
# parsed from libFuzzer's last status line (`#N DONE cov: ... ft: ... corp:
# ...`, or the last `#N ...` line when a crash ended the run early).
#   scripts/run-fuzz.sh build-fuzz/fuzz 60
# Seeds come from fuzz/corpus/<target>/ when it exists; new inputs go to a
# scratch corpus, crashes to DIR/artifacts/<target>-crash-*. A target that
# crashes does not stop the others; the script then exits 1.
# FUZZ_FLAGS adds libFuzzer flags, e.g. FUZZ_FLAGS="-fork=1 -ignore_crashes=1"
# to keep fuzzing past crashes (the line then comes from fork mode's stats).
set -euo pipefail

dir=${1:?usage: run-fuzz.sh DIR [SECONDS]}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
read -r -a extra <<<"${FUZZ_FLAGS:-}"

mapfile -t targets < <(find "$dir" -maxdepth 1 -type f -executable -name '*_fuzz' | sort)
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz: no fuzz targets in $dir" >&2
  exit 1
fi

mkdir -p "$dir/artifacts"
scratch=$(mktemp -d /tmp/stoa-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# The coverage line from a libFuzzer log.
coverage() {
  local name=$1 log=$2 line
  line=$(grep -E '^#[0-9]+:?[[:space:]].*cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1 || true)
  if [[ -z $line ]]; then
    echo "fuzz coverage: $name cov=0 ft=0 corpus=0 execs=0 (no status line)"
    return
  fi
  local execs cov ft corp
  execs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
  cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$line")
  ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$line")
  corp=$(sed -E 's/.*corp: ([0-9]+).*/\1/' <<<"$line")
  echo "fuzz coverage: $name cov=$cov ft=$ft corpus=$corp execs=$execs"
}

failed=()
summary=()
for target in "${targets[@]}"; do
  name=$(basename "$target")
  corpus=("$scratch/$name")
  mkdir -p "${corpus[0]}"
  [[ -d "$root/fuzz/corpus/$name" ]] && corpus+=("$root/fuzz/corpus/$name")
  log="$scratch/$name.log"
  echo "fuzz: $name for ${seconds}s"
  rc=0
  "$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$name-" "${extra[@]}" "${corpus[@]}" >"$log" 2>&1 || rc=$?
  grep -vE '^#[0-9]+:?[[:space:]]' "$log" | tail -n 40 || true
  summary+=("$(coverage "$name" "$log")")
  echo "${summary[-1]}"
  # A run that printed no status line never fuzzed: that is a failure too.
  if [[ ${summary[-1]} == *"(no status line)"* && $rc -eq 0 ]]; then rc=2; fi
  if [[ $rc -ne 0 ]]; then
    failed+=("$name")
    echo "fuzz: $name exited $rc (inputs in $dir/artifacts/$name-*)" >&2
  fi
done
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran clean"
