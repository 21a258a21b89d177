#!/usr/bin/env bash
# Installs what the tests need, then runs every check: formatting, lints, the whole test
# suite (real etcd included) and a quick run of the benchmark so that it cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
# Benchmarks print figures; CI only checks that quick runs work end to end.
cargo run --locked -q -p fleetdb-bench -- store --quick
cargo run --locked -q -p fleetdb-bench -- fetch --hosts 500
cargo run --locked -q -p fleetdb-bench -- inventory --hosts 1000
cargo run --locked -q -p fleetdb-bench -- schema --objects 2000
cargo run --locked -q -p fleetdb-bench -- history --quick
# The whole-API benchmark drives the real `fleetdb serve` binary, built next to it.
cargo build --locked -q -p fleetdb -p fleetdb-bench
"${CARGO_TARGET_DIR:-target}/debug/fleetdb-bench" api --quick
"${CARGO_TARGET_DIR:-target}/debug/fleetdb-bench" agents --quick
"${CARGO_TARGET_DIR:-target}/debug/fleetdb-bench" rollout --quick
"${CARGO_TARGET_DIR:-target}/debug/fleetdb-bench" replicas --quick
"${CARGO_TARGET_DIR:-target}/debug/fleetdb-bench" ui --quick
