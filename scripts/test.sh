#!/usr/bin/env bash
# The test command: installs and starts what the tests need, then runs every check.
#
#   scripts/test.sh            # everything
#
# Needs: cargo (with rustfmt and clippy), node and npm. It installs the pinned DynamoDB engine
# (dynalite) into node_modules/, starts it in memory on a free loopback port, and stops it on exit,
# also when a step fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port, name
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start on port $1" >&2
  return 1
}

step "Node packages (dynalite)"
if [ ! -x node_modules/.bin/dynalite ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

step "DynamoDB engine"
port="$(free_port)"
node node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >/tmp/lambda-ws-dynalite.$$.log 2>&1 &
pids+=("$!")
wait_for_port "$port" dynalite
export LWS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
echo "dynalite on $LWS_TEST_DYNAMODB_ENDPOINT"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
log="$(mktemp)"
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status="${PIPESTATUS[0]}"
set -e
passed="$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')"
failed="$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')"
rm -f "$log"
echo
echo "cargo test: $passed passed, $failed failed"
exit "$status"
