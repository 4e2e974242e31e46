#!/usr/bin/env bash
# PostgreSQL on loopback for tests and local development: installed from Debian's packages when missing,
# one cluster under .pg/, run as the 'postgres' user when we are root (the server refuses to run as root).
#   tools/pg/pg.sh install|start|stop|kill|restart|status|createdb NAME
# Env: PG_PORT (55432), PG_HOME (.pg)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PORT="${PG_PORT:-55432}"
P="${PG_HOME:-$ROOT/.pg}"
DATA="$P/data"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install() {
  [ -n "$(bindir)" ] && [ -x "$(bindir)/postgres" ] && return 0
  echo "pg.sh: installing PostgreSQL from Debian's packages"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install
  local bin; bin=$(bindir)
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then echo "pg.sh: a server already answers on 127.0.0.1:$PORT; using it"; return 0; fi
  mkdir -p "$P"
  [ "$(id -u)" -eq 0 ] && chown postgres "$P"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DATA" -U lastmile --auth=trust -E UTF8 --no-locale > "$P/initdb.log"
  fi
  if as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then echo "pg.sh: already running on 127.0.0.1:$PORT"; return 0; fi
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$P/pg.log" -w -t 60 start \
    -o "-p $PORT -k $P -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" >/dev/null
  echo "pg.sh: PostgreSQL up on 127.0.0.1:$PORT (user lastmile, trust auth on loopback)"
}

stop() {
  local bin; bin=$(bindir)
  [ -f "$DATA/PG_VERSION" ] || return 0
  as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 0
  as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && echo "pg.sh: stopped"
}

case "${1:-status}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  kill) as_owner "$(bindir)/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true ;;
  restart) stop; start ;;
  status) as_owner "$(bindir)/pg_ctl" -D "$DATA" status ;;
  createdb) psql -h 127.0.0.1 -p "$PORT" -U lastmile -d postgres -qc "CREATE DATABASE \"$2\"" ;;
  *) echo "usage: $0 install|start|stop|kill|restart|status|createdb NAME" >&2; exit 2 ;;
esac
