#!/usr/bin/env bash
# KV codec table and speed (docs/codec.md). Builds kvstash_codec_bench and kvstash_membw in
# build-codecbench/, makes .venv-codec (matplotlib, zstandard) if missing, then runs
# bench/codec/run.py with the arguments given:
#   bench/codec/run.sh            # the full table and speed runs (about 10 minutes on a shared 2-core machine: 3 for the table, 6 for speed), renders docs/codec.md
#   bench/codec/run.sh --quick    # the pipeline on a tiny setting (build-codecbench/codec/quick/, doc there)
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-codecbench -DCMAKE_BUILD_TYPE=Release -DKVSTASH_BENCH=ON >/dev/null
cmake --build build-codecbench -j"$(nproc)" --target kvstash_codec_bench kvstash_membw >/dev/null
if ! .venv-codec/bin/python -c "import matplotlib, zstandard" 2>/dev/null; then
  echo "installing matplotlib and zstandard into .venv-codec ..." >&2
  [ -x .venv-codec/bin/python ] || python3 -m venv .venv-codec
  .venv-codec/bin/pip install --quiet matplotlib zstandard
fi
exec .venv-codec/bin/python bench/codec/run.py "$@"
