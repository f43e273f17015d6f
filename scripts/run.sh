#!/usr/bin/env bash
# make run: a throwaway Valkey and PostgreSQL under .run/, the schema migrated, ingest and two
# flush workers in the foreground.
# Ctrl-C (or any exit) stops everything this script started. Data in .run/ survives for the
# next run; `make clean` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.run
mkdir -p "$root/valkey" "$root/pg" "$root/log" "$root/prometheus"

VALKEY_PORT=${VALKEY_PORT:-6399}
PG_PORT=${PG_PORT:-55432}
export INGEST_ADDR=${INGEST_ADDR:-:8080}
export VALKEY_ADDR=127.0.0.1:$VALKEY_PORT
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/chatpipe?sslmode=disable

pids=()       # ingest and workers: stopped first, so they can finish their batches
valkey_pid=""
prom_pid=""
cleanup() {
  trap - EXIT INT TERM
  echo "run: stopping" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$prom_pid" ] && { kill -TERM "$prom_pid" 2>/dev/null; wait "$prom_pid" 2>/dev/null || true; }
  [ -n "$valkey_pid" ] && { kill -TERM "$valkey_pid" 2>/dev/null; wait "$valkey_pid" 2>/dev/null || true; }
  [ -n "${pg_ctl:-}" ] && as_pg "$pg_ctl" -D "$root/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  echo "run: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # host port name
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run: $3 did not listen on $1:$2 within 10s; see $root/log/ and $root/pg/postgres.log" >&2
  exit 1
}

# setsid: a Ctrl-C in the terminal reaches ingest and the workers, not the servers they need
# to finish; the cleanup stops the servers last.
setsid valkey-server --port "$VALKEY_PORT" --bind 127.0.0.1 --dir "$root/valkey" \
  --appendonly yes --save "" --maxmemory 512mb --maxmemory-policy noeviction --logfile "$root/log/valkey.log" &
valkey_pid=$!
wait_port 127.0.0.1 "$VALKEY_PORT" valkey-server

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
pg_ctl=$pgbin/pg_ctl
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres: "$root/pg"; fi
if [ ! -f "$root/pg/data/PG_VERSION" ]; then
  as_pg "$pgbin/initdb" -D "$root/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$root/log/initdb.log"
fi
as_pg "$pg_ctl" -D "$root/pg/data" -l "$root/pg/postgres.log" -w \
  -o "-p $PG_PORT -k $root/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$pgbin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtAc \
  "SELECT 1 FROM pg_database WHERE datname='chatpipe'" | grep -q 1 ||
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres chatpipe

bin/flushworker migrate
bin/ingest &
pids+=($!)
for i in 1 2; do # metrics on 9091 and 9093: 9092 is the console's
  FLUSH_CONSUMER=worker-$i FLUSH_METRICS_ADDR=127.0.0.1:$((9089 + 2 * i)) bin/flushworker &
  pids+=($!)
done
GRAFANA_URL=${GRAFANA_URL:-http://127.0.0.1:3000} bin/flushworker console &
pids+=($!)
wait_port 127.0.0.1 "${INGEST_ADDR##*:}" ingest

# Prometheus (Debian's package) scraping ingest and both workers, with chatpipe's alert rules.
PROM_PORT=${PROM_PORT:-9090}
cat >"$root/prometheus/prometheus.yml" <<YML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ["$PWD/prometheus/alerts.yml"]
scrape_configs:
  - job_name: ingest
    static_configs: [{targets: ["127.0.0.1:${INGEST_ADDR##*:}"]}]
  - job_name: flushworker
    static_configs: [{targets: ["127.0.0.1:9091", "127.0.0.1:9093"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
YML
setsid prometheus --config.file="$root/prometheus/prometheus.yml" --storage.tsdb.path="$root/prometheus/data" \
  --web.listen-address=127.0.0.1:$PROM_PORT >"$root/log/prometheus.log" 2>&1 &
prom_pid=$!
wait_port 127.0.0.1 "$PROM_PORT" prometheus

cat >&2 <<MSG
run: valkey     $VALKEY_ADDR  (data and log in .run/)
run: postgres   $DATABASE_URL   (psql "$DATABASE_URL")
run: workers    http://127.0.0.1:9091/metrics  http://127.0.0.1:9093/metrics
run: console    http://127.0.0.1:9092  (queues, consumers, dead letters: replay or purge)
run: prometheus http://127.0.0.1:$PROM_PORT  (targets: http://127.0.0.1:$PROM_PORT/targets, alerts: /alerts)
run: ingest     http://127.0.0.1:${INGEST_ADDR##*:}  (metrics on /metrics) → try:
  curl -s -XPOST localhost:${INGEST_ADDR##*:}/v1/messages -H 'Content-Type: application/json' -d '{"owner_id":"alice","username":"Alice","content":"hello"}'
  curl -s localhost:${INGEST_ADDR##*:}/v1/messages/recent
  curl -s 'localhost:${INGEST_ADDR##*:}/v1/messages/history?limit=200'     # history (ring, backlog, PostgreSQL)
  curl -sN localhost:${INGEST_ADDR##*:}/v1/messages/stream                 # live tail (SSE)
run: Ctrl-C stops everything
MSG
wait -n "${pids[@]}" "$valkey_pid"
