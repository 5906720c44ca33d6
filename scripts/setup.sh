#!/usr/bin/env bash
# Installs what kvstash needs (Debian packages, the default model), builds it, and, unless
# --no-demo is given, runs the main job on the default model. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

packages=(build-essential cmake pkg-config git python3 python3-dev python3-venv python3-pip libgtest-dev
          nlohmann-json3-dev libcli11-dev libpcre2-dev libxxhash-dev libzstd-dev libhwy-dev bible-kjv
          clang libclang-rt-14-dev libhiredis-dev redis-server iproute2 libcpp-httplib-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/fetch_model.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

if [ "$demo" = 1 ]; then
  # The main job: read a prefix once, keep its attention state in a file, and continue it several
  # times in another process without reading the prefix again.
  mkdir -p build/demo
  bash scripts/corpus.sh > build/demo/genesis.txt
  head -c 4000 build/demo/genesis.txt > build/demo/prefix.txt
  echo "== kvstash prefill: Genesis 1 (King James Bible) -> build/demo/genesis.kvs"
  build/kvstash prefill --file build/demo/prefix.txt --out build/demo/genesis.kvs
  build/kvstash inspect build/demo/genesis.kvs
  echo "== kvstash generate: three continuations from one load of the state"
  build/kvstash generate --state build/demo/genesis.kvs -n 40 --temp 0 \
    --prompt " And God said" --prompt " Then the serpent" --prompt " In the morning"
fi
