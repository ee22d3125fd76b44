#!/usr/bin/env bash
# Events/s of an append-only view that scores every bid with anomaly_score, against the same
# view without it, at ~10K and ~1M entities (issue 11's benchmark; results in BENCHMARKS.md).
# Usage: examples/bench_anomaly.sh [path/to/weir] [events] [runs...]
# runs: any of plain_10k scored_10k plain_1m scored_1m (default: all four).
# Prints events/s and the server's CPU per event (all its threads; steadier than events/s on
# a shared machine). The view's status is polled over one psql session: a psql process per poll cost ~18% of the
# machine's CPU while the view ran, which slowed the view being measured.
set -euo pipefail
weir=${1:-$HOME/.cache/weir-target/release/weir}
events=${2:-2000000}
runs=" ${*:3} "
[ "$runs" = "  " ] && runs=" plain_10k scored_10k plain_1m scored_1m "
dir=$(mktemp -d)
port=17311
"$weir" --data-dir "$dir/data" --pg-addr 127.0.0.1:$port --http-addr 127.0.0.1:$((port + 1)) \
  >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
sql() { psql -h 127.0.0.1 -p $port -X -At -c "$1"; }
for _ in $(seq 50); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
coproc POLL { psql -h 127.0.0.1 -p $port -X -At 2>&1; }
status() { # the status of view $1, over the one polling session
  echo "SELECT status FROM weir_catalog.views WHERE name = '$1';" >&"${POLL[1]}"
  local line
  read -r -t 10 line <&"${POLL[0]}" && echo "$line"
}
cpu_ticks() { # user + system CPU of the server so far, in clock ticks
  awk '{print $14 + $15}' "/proc/$pid/stat"
}
run() { # name, entity expression, with score (1) or not (0)
  local name=$1 entity=$2 scored=$3 select
  [[ "$runs" == *" $name "* ]] || return 0
  sql "CREATE SOURCE src_$name (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, date_time TIMESTAMP, \
       WATERMARK FOR date_time AS date_time - INTERVAL '5 seconds') \
       WITH (connector = 'generator', kind = 'nexmark_bids', count = '$events', seed = '3')" >/dev/null
  if [ "$scored" = 1 ]; then
    select="SELECT auction, price, anomaly_score($entity, date_time, url, channel, channel, price > 9000) AS score FROM src_$name"
  else
    select="SELECT auction, price, CAST($entity AS TEXT) AS entity FROM src_$name"
  fi
  local start end ticks
  ticks=$(cpu_ticks)
  start=$(date +%s.%N)
  sql "CREATE MATERIALIZED VIEW v_$name AS $select" >/dev/null
  for _ in $(seq 6000); do
    [ "$(status "v_$name")" = finished ] && break
    sleep 0.05
  done
  end=$(date +%s.%N)
  ticks=$(($(cpu_ticks) - ticks))
  python3 -c "print('%-28s %10.0f ev/s %8.2f µs CPU/event' % ('$name', $events / ($end - $start), \
    $ticks / $(getconf CLK_TCK) * 1e6 / $events))"
}
# ~10K entities: the auction; ~1M: the auction with the last two digits of the price.
run plain_10k "CAST(auction AS TEXT)" 0
run scored_10k "CAST(auction AS TEXT)" 1
run plain_1m "CAST(auction * 100 + price % 100 AS TEXT)" 0
run scored_1m "CAST(auction * 100 + price % 100 AS TEXT)" 1
