#!/usr/bin/env bash
# KV budget quality and speed grid (docs/eviction.md). Builds kvstash_eviction_bench in build-bench/,
# makes .venv-eviction (matplotlib) if missing, then runs bench/eviction/run.py with the arguments given:
#   bench/eviction/run.sh            # the full grid (about an hour on a shared 2-core machine), renders docs/eviction.md
#   bench/eviction/run.sh --quick    # the pipeline on a tiny grid (results/quick/)
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKVSTASH_BENCH=ON >/dev/null
cmake --build build-bench -j"$(nproc)" --target kvstash_eviction_bench >/dev/null
if ! .venv-eviction/bin/python -c "import matplotlib" 2>/dev/null; then
  echo "installing matplotlib into .venv-eviction ..." >&2
  [ -x .venv-eviction/bin/python ] || python3 -m venv .venv-eviction
  .venv-eviction/bin/pip install --quiet matplotlib
fi
exec .venv-eviction/bin/python bench/eviction/run.py "$@"
