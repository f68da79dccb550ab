#!/usr/bin/env bash
# Installs what the tests need and is missing: Debian's Chromium for the browser test, oathtool and
# zbarimg for the two-factor tests, Python's
# aiosmtpd (the real SMTP server the mail tests talk to) and Schemathesis (the API fuzzing,
# tests/fuzz), the browser test's npm packages and the OpenID test provider's (npm oidc-provider,
# for the single sign-on tests).
# Idempotent and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# The independent authenticator app and QR decoder the two-factor tests check against.
command -v oathtool >/dev/null 2>&1 || need_apt+=(oathtool)
command -v zbarimg >/dev/null 2>&1 || need_apt+=(zbar-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "setup: installing aiosmtpd from PyPI"
  python3 -m pip install -q aiosmtpd
fi

# Pinned: a new Schemathesis may generate other cases or judge answers otherwise.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
  python3 -m pip install -q --root-user-action=ignore "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup: installing the browser test's npm packages"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "setup: installing the OpenID test provider's npm packages (oidc-provider)"
  (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi

# PostgreSQL tests make one database each; drop what earlier runs left behind.
if psql -h 127.0.0.1 -U postgres -d test -tAc 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d test -tAc "select datname from pg_database where datname like 'lk\_test\_%'" |
    while read -r db; do [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -d test -qc "drop database if exists \"$db\"" >/dev/null; done
fi
