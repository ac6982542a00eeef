#!/usr/bin/env bash
# The whole test suite, on real parts: PostgreSQL, Asterisk 22 and sipp, all on loopback.
# Needs root on a fresh host (packages, the Asterisk chroot). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
CENTREX_EXTRAS=dev deploy/bootstrap.sh sip-tester prometheus nftables poppler-utils \
  kamailio kamailio-postgres-modules kamailio-tls-modules  # tests/test_cluster.py: the SIP edge

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== pytest"
set +e
.venv/bin/python -m pytest -ra --durations=25 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
