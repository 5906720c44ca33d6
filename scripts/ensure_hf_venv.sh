#!/usr/bin/env bash
# Makes sure the Hugging Face venv (torch + transformers, for the interop tests; ~5 GB with the CUDA
# libraries PyPI's torch pulls in) exists, outside the clone so every clone and CI run reuse it:
# $KVSTASH_HF_VENV, default ~/.cache/kvstash/venv-hf. Prints its python. Idempotent: installs only
# what cannot be imported.
#   PY=$(bash scripts/ensure_hf_venv.sh)
set -euo pipefail
VENV="${KVSTASH_HF_VENV:-$HOME/.cache/kvstash/venv-hf}"
[ -x "$VENV/bin/python" ] || { echo "ensure_hf_venv.sh: creating $VENV" >&2; mkdir -p "$(dirname "$VENV")"; python3 -m venv "$VENV"; }
if ! "$VENV/bin/python" -c 'import torch, transformers, accelerate, gguf, safetensors, numpy, pytest' >/dev/null 2>&1; then
  echo "ensure_hf_venv.sh: installing torch, transformers 5, accelerate, gguf, safetensors, numpy, pytest into $VENV" >&2
  start=$(date +%s)
  "$VENV/bin/pip" install --quiet "torch>=2.6" "transformers>=5,<6" accelerate gguf safetensors numpy pytest >&2
  echo "ensure_hf_venv.sh: install took $(($(date +%s) - start)) s" >&2
fi
echo "$VENV/bin/python"
