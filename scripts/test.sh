#!/usr/bin/env bash
# The whole test suite, as the README's quick start runs it: unit and property tests (core),
# the store conformance suite and the HTTP tests on SQLite and on PostgreSQL, the mail tests
# against a real SMTP server, then Schemathesis fuzzing of the JSON API against its OpenAPI document
# (tests/fuzz), then the end-to-end browser tests in headless Chromium (the pages, then single
# sign-on against the OpenID test provider, then the office manager's console).
# With CI=true, a PostgreSQL that cannot be reached fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo test --workspace --locked
cargo build --locked -p latchkey
LATCHKEY_BIN=target/debug/latchkey python3 tests/fuzz/fuzz.py
LATCHKEY_BIN=target/debug/latchkey node tests/browser/e2e.mjs
LATCHKEY_BIN=target/debug/latchkey node tests/browser/sso.mjs
LATCHKEY_BIN=target/debug/latchkey node tests/browser/console.mjs
echo "all tests passed"
