#!/usr/bin/env bash
# Makes sure the reference virtual environment (.venv-ref, or $KVSTASH_REF_VENV) exists and has
# llama-cpp-python (llama.cpp, the peer kvstash is compared with), numpy and gguf; prints its
# python. Idempotent: installs only what cannot be imported. llama-cpp-python compiles llama.cpp
# from source (needs a C/C++ compiler; about 6 min on 2 cores, once: pip caches the wheel);
# its multimodal library (LLAVA_BUILD) is not needed here and not built.
#   PY=$(bash scripts/ensure_ref_venv.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${KVSTASH_REF_VENV:-$ROOT/.venv-ref}"
LLAMA_CPP_PYTHON_VERSION=0.3.36

[ -x "$VENV/bin/python" ] || { echo "ensure_ref_venv.sh: creating $VENV" >&2; python3 -m venv "$VENV"; }
if ! "$VENV/bin/python" -c 'import llama_cpp, numpy, gguf' >/dev/null 2>&1; then
  echo "ensure_ref_venv.sh: installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp, CPU only), numpy, gguf" >&2
  start=$(date +%s)
  CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF" "$VENV/bin/pip" install --quiet \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy gguf >&2
  echo "ensure_ref_venv.sh: install took $(($(date +%s) - start)) s" >&2
fi
installed=$("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')
if [ "$installed" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "ensure_ref_venv.sh: warning: $VENV has llama-cpp-python $installed, expected $LLAMA_CPP_PYTHON_VERSION" >&2
fi
echo "$VENV/bin/python"
