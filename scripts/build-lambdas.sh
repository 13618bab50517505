#!/usr/bin/env bash
# Builds every function for Lambda (x86_64 and arm64) as `sam build` would, then benchmarks the
# packages: zip size and init time against a minimal lambda_runtime function built the same way.
# Figures go in README ("Deployment packages and cold start").
#   scripts/build-lambdas.sh [--runs 20] [--no-bench]
# Needs cargo-lambda and zig: pip install cargo-lambda ziglang (done here when missing), and the
# Rust targets x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bench=1
args=()
for a in "$@"; do
  if [[ $a == --no-bench ]]; then bench=0; else args+=("$a"); fi
done

if ! command -v cargo-lambda >/dev/null; then
  python3 -m pip install --quiet cargo-lambda==1.9.2 ziglang==0.17.1
fi
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

for arch in x86_64 arm64; do
  flag=--x86-64; [[ $arch == arm64 ]] && flag=--arm64
  echo "== cargo lambda build --release $flag"
  cargo lambda build --release "$flag" --output-format zip --lambda-dir "target/lambda/$arch" -p lambda-ws-functions
  cargo lambda build --release "$flag" --output-format zip --lambda-dir "target/lambda/$arch" \
    -p lambda-ws-bench --bin lambda-baseline
done

if [[ $bench == 1 ]]; then
  cargo run --quiet --profile bench -p lambda-ws-bench --bin lambda-bench -- "${args[@]}"
fi
