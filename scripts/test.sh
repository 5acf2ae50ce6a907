#!/usr/bin/env bash
# Run scrm's tests. SCRM_TEST_DB picks the backends: sqlite (default), mysql, postgres, or all.
# With mysql/postgres/all, the local services are started first if they are down.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SCRM_TEST_DB:-sqlite}" != sqlite ]; then
  bash scripts/services.sh
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
