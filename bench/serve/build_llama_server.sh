#!/usr/bin/env bash
# Builds llama.cpp's own OpenAI-compatible server, `llama-server`, the peer `kvstash serve` is
# benchmarked against, from the llama.cpp sources vendored in the llama-cpp-python sdist (the same
# llama.cpp version the rest of the project compares with, see scripts/ensure_ref_venv.sh).
# Idempotent: does nothing when the binary already exists. Prints the binary's path on stdout;
# everything else goes to stderr.
#   LLAMA_SERVER=$(bash bench/serve/build_llama_server.sh)
#
# Build: Release, CPU only, GGML_NATIVE=ON, target llama-server only. This llama.cpp version
# embeds a web UI (tools/ui) that the sdist does not ship prebuilt (no tools/ui/dist); by default
# its CMake would fetch it from a Hugging Face bucket at build time, so LLAMA_USE_PREBUILT_UI=OFF and
# LLAMA_BUILD_UI=OFF (no npm) build the server with an empty UI table: the HTTP API is unaffected.
# LLAMA_CURL is deprecated in this version (only a warning; downloads are gone from common) but is
# passed OFF anyway; LLAMA_OPENSSL=OFF since the benchmark speaks plain HTTP on loopback.
# Build time: 687 s (11.5 min) on 2 cores (-j2) of a machine shared with other builds (load ~5), 2025-11.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=0.3.36
WORK="${LLAMA_SERVER_WORK:-$ROOT/build-llama-server}"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$WORK/build"
BIN="$BUILD/bin/llama-server"
JOBS="${JOBS:-2}"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$WORK"
SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  echo "build_llama_server.sh: downloading llama-cpp-python==$VERSION sdist" >&2
  pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK" >&2
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  echo "build_llama_server.sh: extracting $SDIST" >&2
  tar -xzf "$SDIST" -C "$WORK"
fi

start=$(date +%s)
echo "build_llama_server.sh: configuring $SRC -> $BUILD" >&2
cmake -S "$SRC" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_RPC=OFF \
  -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_APP=OFF >&2
echo "build_llama_server.sh: building llama-server (-j$JOBS)" >&2
cmake --build "$BUILD" --config Release -j "$JOBS" --target llama-server >&2
echo "build_llama_server.sh: build took $(($(date +%s) - start)) s" >&2
[ -x "$BIN" ] || { echo "build_llama_server.sh: $BIN not built" >&2; exit 1; }
echo "$BIN"
