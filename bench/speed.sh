#!/usr/bin/env bash
# Engine speed, kvstash vs llama.cpp, side by side (see docs/benchmarks.md).
# Builds kvstash's bench programs (build-bench/), installs llama-cpp-python==0.3.36 into .venv-ref
# if it is missing (compiling llama.cpp takes ~7 minutes), then runs bench/speed.py.
#   bench/speed.sh [--rounds 5] [--threads 2] [--out bench/out/results.json]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKVSTASH_BENCH=ON >/dev/null
cmake --build build-bench -j"$(nproc)" --target kvstash_bench kvstash_membw >/dev/null
if ! .venv-ref/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "installing llama-cpp-python==0.3.36 into .venv-ref (compiles llama.cpp) ..." >&2
  [ -x .venv-ref/bin/python ] || python3 -m venv .venv-ref
  .venv-ref/bin/pip install --quiet numpy "llama-cpp-python==0.3.36"
fi
exec .venv-ref/bin/python bench/speed.py --build build-bench "$@"
