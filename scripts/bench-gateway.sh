#!/usr/bin/env bash
# Benchmarks the local gateway against a bare WebSocket echo server, client and servers in
# separate processes. Figures go in README ("Local gateway performance").
#   scripts/bench-gateway.sh [--idle 10000] [--clients 50] [--seconds 5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n "$(ulimit -Hn)"  # 10,000 connections need 10,000 descriptors in each process
cargo build --profile bench -p lambda-ws-cli --bin lambda-ws -p lambda-ws-bench --bin gateway-bench
exec target/release/gateway-bench "$@"
