#!/usr/bin/env bash
# The benchmark (P1–P5 of docs/benchmarks.md): builds the release server and the benchmark in one
# cargo invocation (so both see the same dependency features and nothing is built twice), then
# runs it. Flags go to the benchmark: --quick, --no-write, --out FILE. PostgreSQL at 127.0.0.1:5432
# is used for the PostgreSQL figure when it answers. Run it on an otherwise quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p latchkey -p latchkey-bench
exec target/release/latchkey-bench "$@"
