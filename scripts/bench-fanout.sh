#!/usr/bin/env bash
# Fan-out benchmark: the sender against a Management API server with injected latency, sessions in
# the memory store and in the DynamoDB engine (started here), with the reference package's way of
# sending as the same-run baseline. Figures go in README ("Fan-out performance").
#   scripts/bench-fanout.sh [--sizes 1000,10000,100000] [--latency-ms 20] [--concurrency 256]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n "$(ulimit -Hn)"  # hundreds of connections in flight

if [ ! -x node_modules/.bin/dynalite ]; then npm ci --no-audit --no-fund --loglevel=error; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p target
node node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >target/dynalite-bench.log 2>&1 &
engine=$!
trap 'kill $engine 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cargo build --profile bench -p lambda-ws-bench --bin fanout-bench
target/release/fanout-bench --dynamodb-endpoint "http://127.0.0.1:$port" "$@"
