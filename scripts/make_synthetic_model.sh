#!/usr/bin/env bash
# Makes the synthetic Llama-3.2-1B / Llama-3.1-8B-shaped models under models/ (random weights,
# quantized by llama.cpp) -- see docs/synthetic-models.md. Examples:
#   scripts/make_synthetic_model.sh --shape 1b --quant q4_k_m
#   scripts/make_synthetic_model.sh --shape 8b --quant q4_k_m q8_0
# Prints the path of every requested model; models that exist are not made again.
#
# Runs in the virtual environment .venv-ref (scripts/ensure_ref_venv.sh makes it when missing:
# compiles llama.cpp once). Arguments go to make_synthetic_model.py.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(bash "$ROOT/scripts/ensure_ref_venv.sh")
exec "$PY" "$ROOT/scripts/make_synthetic_model.py" "$@"
