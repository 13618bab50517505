#!/usr/bin/env bash
# The test command: installs and starts what the tests need, then runs every check.
#
#   scripts/test.sh            # everything
#
# Needs: cargo (with rustfmt and clippy), node and npm, python3 with pip, and apt-get (as root or
# with sudo) when Chromium is missing. It installs what the tests use: the pinned DynamoDB engine
# (dynalite), the AsyncAPI schema, Ajv and TypeScript, and playwright-core with npm ci, the
# template linter (cfn-lint) with pip, the SAM CLI and cargo-lambda in virtualenvs under target/, Debian's
# chromium with apt-get. It starts the engine in memory on a free loopback port and stops it on
# exit, also when a step fails.
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
mkdir -p target
node node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >target/dynalite.log 2>&1 &
pids+=("$!")
wait_for_port "$port" dynalite
export LWS_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
echo "dynalite on $LWS_TEST_DYNAMODB_ENDPOINT"

step "template lint (cfn-lint)"
if ! command -v cfn-lint >/dev/null 2>&1 || [ "$(cfn-lint --version 2>/dev/null)" != "cfn-lint 1.51.0" ]; then
  python3 -m pip install --quiet --disable-pip-version-check 'cfn-lint==1.51.0'
fi
cfn-lint template.yaml examples/*/template.yaml
echo "template.yaml and the examples' templates: no errors or warnings"

step "template validation (sam validate --lint)"
# The SAM CLI goes in its own virtualenv: it pins its own cfn-lint. Validation runs offline; the
# region and the placeholder credentials only satisfy the CLI's start-up checks.
sam="target/sam-venv/bin/sam"
if [ ! -x "$sam" ] || [ "$("$sam" --version 2>/dev/null)" != "SAM CLI, version 1.170.0" ]; then
  python3 -m venv target/sam-venv
  target/sam-venv/bin/pip install --quiet --disable-pip-version-check 'aws-sam-cli==1.170.0'
fi
AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=validate AWS_SECRET_ACCESS_KEY=validate SAM_CLI_TELEMETRY=0 \
  "$sam" validate --lint --template template.yaml

step "contract files (AsyncAPI 3.0 schema, TypeScript)"
node scripts/check-contract.mjs

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the library without its default features (no AWS SDKs), and its docs"
cargo clippy -p lambda-ws --no-default-features --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -p lambda-ws -p lambda-ws-local --no-deps --all-features --locked

step "cargo-lambda (the runtime emulator of the deployed-shape test)"
# tests/tests/cargo_lambda.rs runs this workspace's functions under `cargo lambda watch`. The
# functions are built first so the emulator's first invocations do not wait for a compile.
cargo_lambda="target/cargo-lambda-venv/bin/cargo-lambda"
if [ ! -x "$cargo_lambda" ]; then
  python3 -m venv target/cargo-lambda-venv
  target/cargo-lambda-venv/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2'
fi
export LWS_TEST_CARGO_LAMBDA="$root/$cargo_lambda"
cargo build --locked -q -p lambda-ws-functions --bins

step "cargo test"
log="$(mktemp)"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
cargo_status="${PIPESTATUS[0]}"
set -e
passed="$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')"
failed="$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')"

step "browser client in Chromium"
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if [ ! -d clients/js/node_modules/playwright-core ] || [ clients/js/package-lock.json -nt clients/js/node_modules/.package-lock.json ]; then
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build --locked -q -p lambda-ws-cli --bin lambda-ws
set +e
LWS_GATEWAY_BIN="$root/target/debug/lambda-ws" node --test clients/js/test/ 2>&1 | tee "$log"
node_status="${PIPESTATUS[0]}"
set -e
passed=$((passed + $(grep -Eo '^# pass [0-9]+' "$log" | awk '{print $3}' | head -1)))
failed=$((failed + $(grep -Eo '^# fail [0-9]+' "$log" | awk '{print $3}' | head -1)))
rm -f "$log"
echo "screenshot of the demo page: target/demo-screenshot.png"

echo
echo "tests: $passed passed, $failed failed"
[ "$cargo_status" = 0 ] && [ "$node_status" = 0 ]
