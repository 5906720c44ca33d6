#!/usr/bin/env bash
# Installs and builds what is missing, then runs every test (unit and end-to-end on the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 1800
# ASan+UBSan tests and bounded fuzzing (scripts/sanitize_and_fuzz.sh); KVSTASH_SKIP_SANITIZE=1 skips.
if [ "${KVSTASH_SKIP_SANITIZE:-0}" != 1 ]; then bash scripts/sanitize_and_fuzz.sh; fi
