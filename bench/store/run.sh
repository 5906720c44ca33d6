#!/usr/bin/env bash
# Prefix store benchmark (issue 12): time to first token for a 2,048-token shared prefix and a new
# 32-token suffix with no store, on a miss and on a hit from the disk tier and from Redis on
# loopback (a redis-server started by the benchmark); then 1,000 requests with Redis killed and
# restarted in the middle, every answer compared with the one computed without a store.
#
#   bench/store/run.sh            (ROUNDS=5 REQUESTS=1000 THREADS=2 BUILD_DIR=build)
#
# Prints the CPU's SIMD flags, the read bandwidth (kvstash_membw) and the tables; the figures in
# docs/benchmarks.md ("Prefix store") come from it. The text is the King James Bible's Genesis
# (scripts/corpus.sh); the prefix is its first 2,048 tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-1000}
THREADS=${THREADS:-2}
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target kvstash_store_bench kvstash_membw >/dev/null
mkdir -p bench/out
bash scripts/corpus.sh > bench/out/store_text.txt
echo "cpu flags: $(grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "read bandwidth ($THREADS threads): $("$BUILD_DIR"/kvstash_membw "$THREADS" | sed 's/.*"read_gb_per_s": \([0-9.]*\).*/\1/') GB/s"
"$BUILD_DIR"/kvstash_store_bench --text bench/out/store_text.txt --threads "$THREADS" --rounds "$ROUNDS" \
  --requests "$REQUESTS"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
