#!/usr/bin/env bash
# Run a command with Kafka and PostgreSQL up; stop afterwards only what this script started, so parallel runs
# and a developer's `make infra-up` are left alone.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
started=()
if ! "$ROOT/tools/kafka/kafka.sh" status >/dev/null 2>&1 && ! (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA_PORT:-19092}") 2>/dev/null; then
  "$ROOT/tools/kafka/kafka.sh" start || exit 1
  started+=(kafka)
fi
if ! (exec 3<>"/dev/tcp/127.0.0.1/${PG_PORT:-55432}") 2>/dev/null; then
  "$ROOT/tools/pg/pg.sh" start || exit 1
  started+=(pg)
fi
"$@"
rc=$?
for s in "${started[@]}"; do
  case $s in
    kafka) "$ROOT/tools/kafka/kafka.sh" stop ;;
    pg) "$ROOT/tools/pg/pg.sh" stop ;;
  esac
done
exit $rc
