#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft: combined controller and broker) on loopback, from the jars
# Maven Central serves; no Docker. See docs/kafka.md.
#   tools/kafka/kafka.sh fetch|start|stop|kill|pause|resume|restart|status
# Env: KAFKA_VERSION (3.9.1), KAFKA_PROFILE (kafka3 | kafka4 for 4.x), KAFKA_PORT (19092), KAFKA_HOME (.kafka)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KV="${KAFKA_VERSION:-3.9.1}"
PROFILE="${KAFKA_PROFILE:-kafka3}"
PORT="${KAFKA_PORT:-19092}"
CPORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
K="${KAFKA_HOME:-$ROOT/.kafka}"
LIBS="${KAFKA_LIBS:-$ROOT/.kafka/libs-$KV}"  # shared by every broker home: fetched once
PIDFILE="$K/broker.pid"
if [ "$PROFILE" = kafka4 ]; then
  LOGOPT="-Dlog4j2.configurationFile=$ROOT/tools/kafka/log4j2.properties"
else
  LOGOPT="-Dlog4j.configuration=file:$ROOT/tools/kafka/log4j.properties"
fi

pid() { [ -f "$PIDFILE" ] && cat "$PIDFILE" || true; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
alive() { local p; p=$(pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

fetch() {
  [ -d "$LIBS" ] && [ -n "$(ls -A "$LIBS" 2>/dev/null)" ] && return 0
  command -v mvn >/dev/null || { echo "kafka.sh: Maven is needed to fetch the broker's jars" >&2; exit 1; }
  mkdir -p "$K"
  echo "kafka.sh: fetching Kafka $KV jars from Maven Central into $LIBS"
  # The plugin is pinned: Maven 3.8's default maven-dependency-plugin (2.8) lacks what we use.
  mvn -B -q -f "$ROOT/tools/kafka/pom.xml" -P"$PROFILE" -Dkafka.version="$KV" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
  if ls "$LIBS.tmp" | grep -qi logback; then echo "kafka.sh: logback on the classpath" >&2; exit 1; fi
  mv "$LIBS.tmp" "$LIBS"
}

launch() {
  : > "$K/broker.log"
  # setsid: the broker must outlive the shell that started it (make, a test) and get no terminal signals.
  setsid java -Xms256m -Xmx"${KAFKA_HEAP:-1536m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true $LOGOPT -cp "$LIBS/*" kafka.Kafka "$K/server.properties" \
    >> "$K/broker.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 180); do
    if grep -q 'Kafka Server started' "$K/broker.log"; then echo "kafka.sh: broker up on 127.0.0.1:$PORT"; return 0; fi
    alive || { echo "kafka.sh: broker exited; see $K/broker.log" >&2; tail -20 "$K/broker.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "kafka.sh: broker not up after 90 s; see $K/broker.log" >&2; exit 1
}

start() {
  if alive; then echo "kafka.sh: broker already running (pid $(pid))"; return 0; fi
  if listening; then echo "kafka.sh: something already serves 127.0.0.1:$PORT; using it"; return 0; fi
  fetch
  mkdir -p "$K/data"
  sed -e "s#@DATA@#$K/data#" -e "s#@PORT@#$PORT#g" -e "s#@CPORT@#$CPORT#g" \
    "$ROOT/tools/kafka/server.properties" > "$K/server.properties"
  # --ignore-formatted keeps data across restarts (the fault tests restart the broker on purpose).
  java $LOGOPT -cp "$LIBS/*" kafka.tools.StorageTool format -c "$K/server.properties" \
    -t 4L6g3nShT-eMCtK--X86sw --ignore-formatted > "$K/format.log" 2>&1
  launch
}

stop() {
  alive || { rm -f "$PIDFILE"; return 0; }
  local p; p=$(pid)
  kill -CONT "$p" 2>/dev/null || true
  kill -TERM "$p"
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || { rm -f "$PIDFILE"; echo "kafka.sh: stopped"; return 0; }; sleep 0.5; done
  kill -KILL "$p" 2>/dev/null || true; rm -f "$PIDFILE"; echo "kafka.sh: killed after 30 s"
}

case "${1:-status}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  kill) alive && kill -KILL "$(pid)"; rm -f "$PIDFILE" ;;
  pause) kill -STOP "$(pid)" ;;
  resume) kill -CONT "$(pid)" ;;
  restart) stop; start ;;
  clean) stop; rm -rf "$K/data" ;;
  status) if alive; then echo "running (pid $(pid)) on 127.0.0.1:$PORT"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 fetch|start|stop|kill|pause|resume|restart|clean|status" >&2; exit 2 ;;
esac
