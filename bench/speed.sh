#!/usr/bin/env bash
# Engine speed, kvstash vs llama.cpp, side by side (see docs/benchmarks.md, "Engine speed").
# Builds kvstash's bench programs (build-bench/), makes sure .venv-ref has llama-cpp-python and the
# synthetic 1B and 8B models exist (scripts/make_synthetic_model.sh: made once, reused), then runs
# bench/speed.py, which writes the table into docs/benchmarks.md.
#   bench/speed.sh [--rounds 3] [--threads 2] [--models smollm2-135m-q4_1,llama-1b-q4_k_m,...] [--doc '']
set -euo pipefail
cd "$(dirname "$0")/.."
models=$(python3 -c 'import sys; a = sys.argv[1:]; print(a[a.index("--models") + 1] if "--models" in a else "all")' "$@")
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKVSTASH_BENCH=ON >/dev/null
cmake --build build-bench -j"$(nproc)" --target kvstash_bench kvstash_membw >/dev/null
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash scripts/fetch_model.sh
for spec in 1b:q4_k_m 1b:q8_0 8b:q4_k_m 8b:q8_0; do  # also installs .venv-ref when missing
  label="llama-${spec%%:*}-${spec##*:}"
  if [ "$models" = all ] || [[ ",$models," == *",$label,"* ]]; then
    bash scripts/make_synthetic_model.sh --shape "${spec%%:*}" --quant "${spec##*:}" >&2
  fi
done
PY=$(bash scripts/ensure_ref_venv.sh)
exec "$PY" bench/speed.py --build build-bench "$@"
