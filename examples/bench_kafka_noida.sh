#!/usr/bin/env bash
# `weir bench --kafka` against a Kafka-protocol broker in its own process (noida-db, installed
# by .ci/setup), one query at a time, each with a freshly started broker: noida-db keeps every
# message in memory, so a broker reused across runs grows and slows down. After writes it also
# rewrites its whole state file for seconds (most of a core), so `weir bench` starts each
# measured phase only once the machine has been quiet for 3 s.
#
#   examples/bench_kafka_noida.sh [EVENTS] [PARTITIONS] [QUERIES...]
#   examples/bench_kafka_noida.sh 1000000 4 tumble hop groupby
#
# Prints one JSON line per query (see BENCHMARKS.md). Needs a release build of weir in
# $CARGO_TARGET_DIR (default $HOME/.cache/weir-target).
set -euo pipefail
events=${1:-1000000}
partitions=${2:-4}
shift $(( $# > 2 ? 2 : $# ))
queries=("${@:-tumble hop groupby}")
target=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
weir="$target/release/weir"
noida=$(ls "$HOME"/.cache/weir-noida/lib/python3*/site-packages/noida_db/noida-db 2>/dev/null | head -1)
[ -x "$weir" ] || { echo "no $weir: run cargo build --release first" >&2; exit 1; }
[ -n "$noida" ] || { echo "noida-db not installed: run .ci/setup first" >&2; exit 1; }

for query in ${queries[*]}; do
  dir=$(mktemp -d)
  port=$(( 20000 + RANDOM % 10000 ))
  "$noida" start --only kafka --kafka-port "$port" --data-dir "$dir" >/dev/null 2>&1 &
  broker=$!
  for _ in $(seq 1 60); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.5
  done
  "$weir" bench --kafka --brokers "127.0.0.1:$port" --query "$query" \
    --partitions "$partitions" --events "$events" --json 2>/dev/null || true
  # noida-db takes seconds to exit on SIGTERM while busy; it must not run into the next query.
  kill -9 "$broker" 2>/dev/null || true
  wait "$broker" 2>/dev/null || true
  rm -rf "$dir"
done
