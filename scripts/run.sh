#!/usr/bin/env bash
# make run: a throwaway Valkey and PostgreSQL, the schema migrated, ingest, two flush workers,
# the console and Prometheus, in the foreground.
#
# Works from a checkout anywhere: root's home, a 0700 folder, a path with spaces. PostgreSQL
# refuses to run as root, so as root it runs as the postgres user, which cannot enter a 0700
# folder: its data then lives under that user's home (printed at start, linked from .run/pg),
# one folder per checkout, so a second run finds the data of the first.
# Ctrl-C (or any exit) stops everything this script started. A run killed with -9 leaves its
# servers behind: the next run stops them first (.run/pids). `make clean` removes the data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.run
mkdir -p "$root/valkey" "$root/log" "$root/prometheus"

VALKEY_PORT=${VALKEY_PORT:-6399}
PG_PORT=${PG_PORT:-55432}
PROM_PORT=${PROM_PORT:-9090}
WORKER_PORTS=${WORKER_PORTS:-9091 9093} # 9092 is the console's
export INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:8080}
export CONSOLE_ADDR=${CONSOLE_ADDR:-127.0.0.1:9092}
export VALKEY_ADDR=127.0.0.1:$VALKEY_PORT
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/chatpipe?sslmode=disable
# PostgreSQL's data outlives the checkout (it lives by the checkout's path, see below) and
# Valkey's does not: ids floored by the clock never meet the rows of an earlier checkout at the
# same path, where counter ids would start at 1 again and be dead-lettered as ids given twice.
export INGEST_IDS=${INGEST_IDS:-clock}
ingest_port=${INGEST_ADDR##*:}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$pgbin" ] || { echo "run: PostgreSQL not found in /usr/lib/postgresql/*/bin: run make deps" >&2; exit 1; }
pg_ctl=$pgbin/pg_ctl
# From /: the postgres user may not be able to enter the current folder (root's home is 0700).
as_pg() { (cd / && if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi); }

# Where PostgreSQL's data lives: .run/pg for an ordinary user (the server runs as that user);
# as root, a folder of the postgres user named after this checkout, linked from .run/pg.
pg_home() {
  if [ "$(id -u)" != 0 ]; then echo "$root/pg"; return; fi
  local home sum
  home=$(getent passwd postgres | cut -d: -f6)
  [ -n "$home" ] && [ -d "$home" ] || home=/var/tmp
  sum=$(printf '%s' "$PWD" | sha256sum | cut -c1-12)
  printf '%s/chatpipe-run/%s-%s\n' "$home" "$(printf '%s' "${PWD##*/}" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-40)" "$sum"
}
pgdir=$(pg_home)
if [ "$pgdir" != "$root/pg" ]; then
  if [ -d "$root/pg" ] && [ ! -L "$root/pg" ]; then
    # An earlier layout kept the data in .run/pg, which the postgres user may not reach.
    mv "$root/pg" "$root/pg.before-$(date +%Y%m%d%H%M%S)"
    echo "run: moved the old .run/pg aside; its data is not used" >&2
  fi
  mkdir -p "$pgdir"
  chown postgres: "$(dirname "$pgdir")" "$pgdir"
  ln -sfn "$pgdir" "$root/pg"
else
  mkdir -p "$pgdir"
fi

# Servers of an earlier run that was killed with -9: stop them before starting ours.
stop_stale() {
  local pid exe
  if [ -f "$root/pids" ]; then
    while read -r pid exe; do
      [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || continue
      echo "run: stopping $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid) left by an earlier run" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done <"$root/pids"
    rm -f "$root/pids"
  fi
  if [ -f "$pgdir/data/postmaster.pid" ] && as_pg "$pg_ctl" -D "$pgdir/data" status >/dev/null 2>&1; then
    echo "run: stopping the PostgreSQL left by an earlier run" >&2
    as_pg "$pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null
  fi
}
stop_stale

record() { echo "$1 $(readlink "/proc/$1/exe" 2>/dev/null)" >>"$root/pids"; }

pids=()       # ingest, workers and console: stopped first, so they can finish their batches
servers=()    # Valkey and Prometheus: stopped after them
pg_started=""
# alive: whether pid runs (an exited child not yet waited for is a zombie, which kill -0 counts).
alive() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$st" ] && [ "$st" != Z ]; }
# stop: SIGTERM to each pid, up to 20 s for them to finish what they hold, then SIGKILL to any
# left, named: a stop that hangs says which process it waited for.
stop() {
  local pid i
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 200); do
    for pid in "$@"; do alive "$pid" && break; pid=""; done
    [ -z "$pid" ] && break
    sleep 0.1
  done
  for pid in "$@"; do
    if alive "$pid"; then
      echo "run: $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid) did not stop within 20 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  echo "run: stopping" >&2
  stop "${pids[@]}"
  echo "run: stopping Valkey and Prometheus" >&2
  stop "${servers[@]}"
  [ -n "$pg_started" ] && { echo "run: stopping PostgreSQL" >&2; as_pg "$pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true; }
  rm -f "$root/pids"
  echo "run: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # host port name
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run: $3 did not listen on $1:$2 within 10s; see $root/log/ and $pgdir/postgres.log" >&2
  exit 1
}

# setsid: a Ctrl-C in the terminal reaches ingest and the workers, not the servers they need
# to finish; the cleanup stops the servers last.
setsid valkey-server --port "$VALKEY_PORT" --bind 127.0.0.1 --dir "$root/valkey" \
  --appendonly yes --save "" --maxmemory 512mb --maxmemory-policy noeviction --logfile "$root/log/valkey.log" &
servers+=($!)
wait_port 127.0.0.1 "$VALKEY_PORT" valkey-server
record "${servers[0]}" # once it listens: its exec is done

if [ ! -f "$pgdir/data/PG_VERSION" ]; then
  as_pg "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --locale=C >"$root/log/initdb.log"
fi
# TCP on loopback only; no Unix socket, whose folder the path of a checkout could not hold.
as_pg "$pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=" start >/dev/null
pg_started=1
as_pg "$pgbin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtAc \
  "SELECT 1 FROM pg_database WHERE datname='chatpipe'" | grep -q 1 ||
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres chatpipe

bin/flushworker migrate
bin/ingest &
pids+=($!)
i=0
for port in $WORKER_PORTS; do
  i=$((i + 1))
  FLUSH_CONSUMER=worker-$i FLUSH_METRICS_ADDR=127.0.0.1:$port bin/flushworker &
  pids+=($!)
done
GRAFANA_URL=${GRAFANA_URL:-http://127.0.0.1:3000} bin/flushworker console &
pids+=($!)
wait_port 127.0.0.1 "$ingest_port" ingest
for pid in "${pids[@]}"; do record "$pid"; done

# Prometheus (Debian's package) scraping ingest and the workers, with chatpipe's alert rules.
targets=$(printf '"127.0.0.1:%s", ' $WORKER_PORTS)
cat >"$root/prometheus/prometheus.yml" <<YML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ["$PWD/prometheus/alerts.yml"]
scrape_configs:
  - job_name: ingest
    static_configs: [{targets: ["127.0.0.1:$ingest_port"]}]
  - job_name: flushworker
    static_configs: [{targets: [${targets%, }]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
YML
setsid prometheus --config.file="$root/prometheus/prometheus.yml" --storage.tsdb.path="$root/prometheus/data" \
  --web.listen-address=127.0.0.1:$PROM_PORT >"$root/log/prometheus.log" 2>&1 &
servers+=($!)
wait_port 127.0.0.1 "$PROM_PORT" prometheus
record "${servers[1]}"

cat >&2 <<MSG
run: data       valkey: $root/valkey, postgres: $pgdir, logs: $root/log (make clean removes them)
run: valkey     $VALKEY_ADDR
run: postgres   $DATABASE_URL   (psql "$DATABASE_URL")
run: workers    $(for p in $WORKER_PORTS; do printf 'http://127.0.0.1:%s/metrics  ' "$p"; done)
run: console    http://$CONSOLE_ADDR  (queues, consumers, dead letters: replay or purge)
run: prometheus http://127.0.0.1:$PROM_PORT  (targets: http://127.0.0.1:$PROM_PORT/targets, alerts: /alerts)
run: ingest     http://$INGEST_ADDR  (metrics on /metrics) → try:
  curl -s -XPOST localhost:$ingest_port/v1/messages -H 'Content-Type: application/json' -d '{"owner_id":"alice","username":"Alice","content":"hello"}'
  curl -s localhost:$ingest_port/v1/messages/recent
  curl -s 'localhost:$ingest_port/v1/messages/history?limit=200'     # history (ring, backlog, PostgreSQL)
  curl -sN localhost:$ingest_port/v1/messages/stream                 # live tail (SSE)
run: ready; Ctrl-C stops everything
MSG
wait -n "${pids[@]}" "${servers[@]}"
