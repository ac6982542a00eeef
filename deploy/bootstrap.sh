#!/usr/bin/env bash
# Shared set-up for run.sh and test.sh on a Debian host, as root: the system packages centrex
# needs, then a virtualenv in .venv with centrex installed (editable). Idempotent and quick when
# everything is already there. PostgreSQL and Asterisk are installed by centrex itself, on demand
# (Asterisk into a debootstrap root under /var/cache/centrex, since Debian 12 has none).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
EXTRAS="${CENTREX_EXTRAS:-}"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
have debootstrap || have asterisk || need_pkgs+=(debootstrap)
for pkg in "$@"; do
  case "$pkg" in
    sip-tester) have sipp || need_pkgs+=(sip-tester) ;;
    prometheus) have prometheus && have promtool || need_pkgs+=(prometheus) ;;
    *) dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg") ;;
  esac
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "centrex: run as root (needs: ${need_pkgs[*]})" >&2
    exit 1
  fi
  echo "== apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages' own services (prometheus) are not started: centrex starts what it needs itself.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.centrex
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 1 ] || cp /usr/sbin/policy-rc.d.centrex /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.centrex
fi
# The clustered shape (docs/cluster.md) starts Kamailio itself, with its own configuration: the
# package's system service stays off, or it would hold port 5060 with the stock configuration.
if dpkg -s kamailio >/dev/null 2>&1; then
  { systemctl disable --now kamailio.service || update-rc.d kamailio disable; } >/dev/null 2>&1 || true
fi

stamp="$VENV/.centrex-installed${EXTRAS:+-$EXTRAS}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing centrex${EXTRAS:+[$EXTRAS]} into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
