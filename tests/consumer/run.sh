#!/usr/bin/env bash
# Installs a built Stoa into a scratch prefix, then builds and runs the
# consumer program against it twice: with find_package(stoa) and with
# pkg-config. Usage: tests/consumer/run.sh [BUILD_DIR]   (default: build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
cxx=${CXX:-c++}

tmp=$(mktemp -d /tmp/stoa-consumer.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "== install into $tmp/prefix"
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }

echo "== find_package(stoa)"
cmake -S "$here" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$tmp/prefix"
cmake --build "$tmp/build"
mkdir "$tmp/store-cmake"
"$tmp/build/stoa_consumer" "$tmp/store-cmake"

echo "== pkg-config stoa"
pcdir=$(dirname "$(find "$tmp/prefix" -name stoa.pc -print -quit)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs stoa)
echo "$cxx -std=c++20 main.cc $flags"
# shellcheck disable=SC2086  # flags are meant to split
"$cxx" -std=c++20 -o "$tmp/consumer-pc" "$here/main.cc" $flags
mkdir "$tmp/store-pc"
"$tmp/consumer-pc" "$tmp/store-pc"

echo "== consumer OK"
