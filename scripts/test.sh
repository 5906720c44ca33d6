#!/usr/bin/env bash
# Installs and builds what is missing, then runs every test (unit and end-to-end on the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 1800
