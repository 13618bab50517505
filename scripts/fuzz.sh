#!/usr/bin/env bash
# The long run of the property suite (tests/tests/properties.rs): every property with
# PROPTEST_CASES cases (default 1,000,000), optimised, printing the outcomes per property (the
# table in SECURITY.md). The test command runs 2,000 per property.
#   scripts/fuzz.sh [cases]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROPTEST_CASES="${1:-1000000}" LWS_TEST_DYNAMODB_ENDPOINT=unused \
  cargo test --profile bench -p lambda-ws-e2e --test properties -- --test-threads 2 --nocapture
