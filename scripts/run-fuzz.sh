#!/usr/bin/env bash
# Runs every libFuzzer target found in DIR for SECONDS each.
#   scripts/run-fuzz.sh build-fuzz/fuzz 60
# Seeds come from fuzz/corpus/<target>/ when it exists; new inputs go to a
# scratch corpus, crashes to DIR/artifacts/.
set -euo pipefail

dir=${1:?usage: run-fuzz.sh DIR [SECONDS]}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)

mapfile -t targets < <(find "$dir" -maxdepth 1 -type f -executable | sort)
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz: no fuzz targets in $dir" >&2
  exit 1
fi

mkdir -p "$dir/artifacts"
scratch=$(mktemp -d /tmp/stoa-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

for target in "${targets[@]}"; do
  name=$(basename "$target")
  corpus=("$scratch/$name")
  mkdir -p "${corpus[0]}"
  [[ -d "$root/fuzz/corpus/$name" ]] && corpus+=("$root/fuzz/corpus/$name")
  echo "fuzz: $name for ${seconds}s"
  "$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$name-" "${corpus[@]}"
done
echo "fuzz: ${#targets[@]} target(s) ran clean"
