#!/usr/bin/env bash
# The Python module's tests: `pip install .` into .venv-test and pytest python/tests there, then the
# Hugging Face interop tests (python/tests/test_hf.py, examples/hf_roundtrip.py) in the torch +
# transformers venv outside the clone (scripts/ensure_hf_venv.sh). The first install compiles the
# library (~2-3 min on 2 cores); the build in build-python/ is reused by the second venv and by reruns.
set -euo pipefail
cd "$(dirname "$0")/.."

install_kvstash() {  # $1: a venv's python
  "$1" -c "import scikit_build_core, nanobind, pytest" 2>/dev/null ||
    "$1" -m pip install --quiet scikit-build-core nanobind pytest
  # No build isolation: the same build tools every time, so build-python/ is reused.
  "$1" -m pip install --quiet --no-build-isolation .
}

[ -x .venv-test/bin/python ] || python3 -m venv .venv-test
install_kvstash .venv-test/bin/python
# Run from python/tests' parent so that `import kvstash` is the installed package.
.venv-test/bin/python -m pytest -q -p no:cacheprovider python/tests

HF_PY=$(bash scripts/ensure_hf_venv.sh)
install_kvstash "$HF_PY"
"$HF_PY" -m pytest -q -p no:cacheprovider python/tests/test_hf.py
