#!/usr/bin/env bash
# Installs and builds what is missing, then runs every test (unit and end-to-end on the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
# The independent Python reader of .kvs files (scripts/check_kvs_python.py), run by a test.
# The official openai client, which a server test drives kvstash serve with.
if ! .venv-test/bin/python -c "import numpy, safetensors, xxhash, openai" 2>/dev/null; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install --quiet numpy safetensors xxhash openai
fi
export KVSTASH_TEST_PYTHON="$PWD/.venv-test/bin/python"
# The synthetic Llama-3.2-1B-shaped Q4_K_M model and llama.cpp's logits on it (docs/synthetic-models.md;
# the first run compiles llama.cpp into .venv-ref), which SyntheticModel.* compare with kvstash's.
bash scripts/make_synthetic_model.sh --shape 1b --quant q4_k_m >/dev/null
export KVSTASH_REQUIRE_SYNTHETIC=1
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 1800
# The Python module (pip install .) and its tests, Hugging Face interop included.
bash scripts/test_python.sh
# ASan+UBSan tests and bounded fuzzing (scripts/sanitize_and_fuzz.sh); KVSTASH_SKIP_SANITIZE=1 skips.
if [ "${KVSTASH_SKIP_SANITIZE:-0}" != 1 ]; then bash scripts/sanitize_and_fuzz.sh; fi
