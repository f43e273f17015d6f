#!/usr/bin/env bash
# Exactly-once check of the whole pipeline, end to end, on real processes:
# ingest + 3 flush workers, a bounded load through HTTP, workers SIGKILLed and restarted
# several times, PostgreSQL stopped for 20 s mid-run; then every accepted id must be in
# PostgreSQL exactly once, nothing pending, nothing dead-lettered, the streams trimmed.
# Usage: scripts/verify-flush.sh [messages]   (default 200000; bounded to 15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
root=$PWD/.run/verify
rm -rf "$root"; mkdir -p "$root/pg" "$root/valkey"
VPORT=16399 PGPORT=55433 IPORT=18080
export VALKEY_ADDR=127.0.0.1:$VPORT DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/chatpipe?sslmode=disable"
export INGEST_ADDR=127.0.0.1:$IPORT LOG_LEVEL=warn FLUSH_MIN_IDLE=5s
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$root/pg"
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$root"/w*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$root/pg/data" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
say() { printf '%s verify: %s\n' "$(date +%T)" "$*" >&2; }

valkey-server --port $VPORT --bind 127.0.0.1 --dir "$root/valkey" --appendonly yes --appendfsync everysec \
  --save "" --logfile "$root/valkey.log" & pids+=($!)
as_pg "$pgbin/initdb" -D "$root/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
pgstart() { as_pg "$pgbin/pg_ctl" -D "$root/pg/data" -l "$root/pg/log" -w -o "-p $PGPORT -k $root/pg -c listen_addresses=127.0.0.1" start >/dev/null; }
pgstart
as_pg "$pgbin/createdb" -h 127.0.0.1 -p $PGPORT -U postgres chatpipe
psql() { command psql "$DATABASE_URL" -qtAX "$@"; }

go build -o bin/ ./cmd/...
bin/flushworker migrate >/dev/null
bin/ingest 2>"$root/ingest.log" & pids+=($!)
# Each worker's current pid is in w<i>.pid, so that the killer and the cleanup find it.
# The subshell keeps bash from reporting each SIGKILLed job.
start_worker() {
  (FLUSH_CONSUMER=w$1 FLUSH_METRICS_ADDR=127.0.0.1:$((19090 + $1)) bin/flushworker >/dev/null 2>>"$root/worker$1.log" &
   echo $! >"$root/w$1.pid")
}
for i in 1 2 3; do start_worker $i; done
for _ in $(seq 100); do curl -sf "localhost:$IPORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf -XPUT "localhost:$IPORT/v1/rate-limit" -H 'Content-Type: application/json' -d '{"limit":1000000,"window_seconds":1}' >/dev/null

say "sending $N messages through HTTP (public and private), 3 workers running"
CHATLOAD_URL=http://127.0.0.1:$IPORT bin/chatload --messages "$N" --concurrency 32 --invalid-percent 0 --hot-percent 0 --ids-out "$root/ids" \
  >"$root/load.out" 2>"$root/load.progress" & load=$!
(
  sleep 2
  for round in 1 2 3 4 5 6; do
    i=$(( (round % 3) + 1 ))
    kill -9 "$(cat "$root/w$i.pid")" 2>/dev/null && echo "kill $i" >&2
    sleep 0.5
    start_worker $i
    sleep 1.5
  done
) 2>"$root/kills.log" & killer=$!
sleep 8
say "stopping PostgreSQL for 20 s"
as_pg "$pgbin/pg_ctl" -D "$root/pg/data" -m fast -w stop >/dev/null
sleep 20
pgstart
say "PostgreSQL back"
wait $load; wait $killer
cat "$root/load.out" >&2
accepted=$(wc -l <"$root/ids")
say "waiting for the backlog to drain"
deadline=$((SECONDS + 600))
while :; do
  rows=$(psql -c "SELECT (SELECT count(*) FROM chat_messages) + (SELECT count(*) FROM private_messages)")
  pending=0
  for s in message private_message; do
    p=$(valkey-cli -p $VPORT XPENDING chatpipe:flush:$s flushworkers | head -n1); pending=$((pending + ${p:-0}))
  done
  [ "$rows" -ge "$accepted" ] && [ "$pending" = 0 ] && break
  [ $SECONDS -gt $deadline ] && { say "timeout: $rows rows, $pending pending"; exit 1; }
  sleep 1
done
sleep 3  # a trim interval or two
psql -c "CREATE TABLE accepted (kind text, cache_id bigint)"
psql -c "\copy accepted FROM '$root/ids' WITH (DELIMITER ' ')"
missing=$(psql -c "SELECT count(*) FROM accepted a WHERE NOT EXISTS (SELECT 1 FROM chat_messages m WHERE a.kind='message' AND m.cache_id=a.cache_id) AND NOT EXISTS (SELECT 1 FROM private_messages m WHERE a.kind='private_message' AND m.cache_id=a.cache_id)")
extra=$(psql -c "SELECT (SELECT count(*) FROM chat_messages m WHERE NOT EXISTS (SELECT 1 FROM accepted a WHERE a.kind='message' AND a.cache_id=m.cache_id)) + (SELECT count(*) FROM private_messages m WHERE NOT EXISTS (SELECT 1 FROM accepted a WHERE a.kind='private_message' AND a.cache_id=m.cache_id))")
dupes=$(psql -c "SELECT count(*) - count(DISTINCT (kind, cache_id)) FROM accepted")
dead=$(( $(valkey-cli -p $VPORT XLEN chatpipe:dead:message) + $(valkey-cli -p $VPORT XLEN chatpipe:dead:private_message) ))
left=$(( $(valkey-cli -p $VPORT XLEN chatpipe:flush:message) + $(valkey-cli -p $VPORT XLEN chatpipe:flush:private_message) ))
retries=$(cat "$root"/worker*.log | grep -c "writing the batch failed, retrying" || true)
echo
printf '%-34s %s\n' "accepted by ingest" "$accepted" "rows in PostgreSQL" "$rows" "accepted but missing (lost)" "$missing" \
  "rows not accepted (extra)" "$extra" "ids given twice" "$dupes" "dead letters" "$dead" \
  "entries left in the streams" "$left" "pending entries" "$pending" "workers SIGKILLed" "$(grep -c kill "$root/kills.log")" \
  "batch writes retried (all workers)" "$retries"
[ "$accepted" -gt 0 ] && [ "$missing" = 0 ] && [ "$extra" = 0 ] && [ "$dupes" = 0 ] && [ "$dead" = 0 ] && [ "$rows" = "$accepted" ] || { say "FAILED"; exit 1; }
say "OK: exactly once"
