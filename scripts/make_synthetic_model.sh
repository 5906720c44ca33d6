#!/usr/bin/env bash
# Makes the synthetic Llama-3.2-1B / Llama-3.1-8B-shaped models under models/ (random weights,
# quantized by llama.cpp) -- see docs/synthetic-models.md. Examples:
#   scripts/make_synthetic_model.sh --shape 1b --quant q4_k_m
#   scripts/make_synthetic_model.sh --shape 8b --quant q4_k_m q8_0
# Prints the path of every requested model; models that exist are not made again.
#
# Idempotent: creates the virtual environment .venv-ref at the repository root (shared with
# scripts/make_reference.sh) and installs llama-cpp-python (this compiles llama.cpp from source:
# needs a C/C++ compiler; about 7 min on 2 cores), numpy and gguf into it only when they cannot
# be imported there. Arguments go to make_synthetic_model.py.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${KVSTASH_REF_VENV:-$ROOT/.venv-ref}"
LLAMA_CPP_PYTHON_VERSION=0.3.36

if [ ! -x "$VENV/bin/python" ]; then
  echo "make_synthetic_model.sh: creating $VENV" >&2
  python3 -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c 'import llama_cpp, numpy, gguf' >/dev/null 2>&1; then
  echo "make_synthetic_model.sh: installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp, CPU only), numpy, gguf" >&2
  start=$(date +%s)
  "$VENV/bin/pip" install --quiet "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy gguf >&2
  echo "make_synthetic_model.sh: install took $(( $(date +%s) - start )) s" >&2
fi

installed=$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')
if [ "$installed" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "make_synthetic_model.sh: warning: $VENV has llama-cpp-python $installed, expected $LLAMA_CPP_PYTHON_VERSION" >&2
fi

exec "$VENV/bin/python" "$ROOT/scripts/make_synthetic_model.py" "$@"
