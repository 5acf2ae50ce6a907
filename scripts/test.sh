#!/usr/bin/env bash
# Run scrm's tests. SCRM_TEST_DB picks the backends: sqlite (default), mysql, postgres, or all.
# With mysql/postgres/all, the local services are started first if they are down.
set -euo pipefail
cd "$(dirname "$0")/.."
# The console's browser tests drive Debian's Chromium through chromedriver (a CJK font keeps
# their screenshots readable).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the console's browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null
  else
    echo "chromium/chromedriver missing: apt-get install chromium chromium-driver (browser tests will fail)" >&2
  fi
fi
if [ "${SCRM_TEST_DB:-sqlite}" != sqlite ]; then
  bash scripts/services.sh
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
