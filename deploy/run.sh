#!/usr/bin/env bash
# The main job on a fresh Debian host, as root: PostgreSQL, Asterisk, the API and the call-control
# daemon, in the foreground; prints where each listens and how to register a softphone.
# Ctrl-C stops everything. --cluster: the clustered shape instead (docs/cluster.md). Settings: CENTREX_* environment variables or var/centrex.env.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--cluster" ]; then
  # Kamailio in front of two Asterisk nodes on loopback addresses (docs/cluster.md).
  shift
  deploy/bootstrap.sh kamailio kamailio-postgres-modules kamailio-tls-modules
  exec .venv/bin/centrex cluster "$@"
fi
deploy/bootstrap.sh nftables  # the guard bans addresses with nft
exec .venv/bin/centrex up "$@"
