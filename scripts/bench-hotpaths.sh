#!/usr/bin/env bash
# Hot-path benchmark: $connect, a message, $disconnect and a channel send with a fixed latency on
# every DynamoDB call, with the sequential store round trips and consumed capacity of each, for
# this tree and a baseline commit built in the same run, and this tree once more with the channel
# given presence and another member in it. Figures go in README ("Store round trips and capacity").
#   scripts/bench-hotpaths.sh [--baseline <commit>] [--latency-ms 10] [--iterations 30] [--recipients 10000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n "$(ulimit -Hn)"

# The baseline: main before the hot-path work (one store read and one counter write per message).
baseline=875cf9c
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ ! -x node_modules/.bin/dynalite ]; then npm ci --no-audit --no-fund --loglevel=error; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p target
node node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >target/dynalite-hotpath.log 2>&1 &
engine=$!
tree="target/hotpath-baseline"
cleanup() {
  kill "$engine" 2>/dev/null || true
  git worktree remove --force "$tree" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

build() { # directory, target directory
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --quiet --profile bench \
    -p "$(if [ -d "$1/crates/cli" ]; then echo lambda-ws-cli; else echo lambda-ws-local; fi)" --bin lambda-ws \
    -p lambda-ws-bench --bin fanout-bench)
}
git worktree remove --force "$tree" 2>/dev/null || true
git worktree add --detach --quiet "$tree" "$baseline"
build "$tree" "$PWD/target/hotpath-baseline-target"
build . "$PWD/target"
cargo build --quiet --profile bench -p lambda-ws-bench --bin hotpath-bench
target/release/hotpath-bench --dynamodb-endpoint "http://127.0.0.1:$port" \
  --build "baseline ($(git rev-parse --short "$baseline"))=target/hotpath-baseline-target/release" \
  --build "this build ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes'))=target/release" \
  --presence "${args[@]}"
