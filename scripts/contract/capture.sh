#!/bin/bash
# capture.sh BASE OUT: records answers of a running ingest, one JSON line each (VALKEY_PID: also
# 503s, with that Valkey paused for a moment). It leaves the shared rate limit as it found it.
B=$1; OUT=$2; : > "$OUT"
rec() { # method template url [curl args…]
  local m=$1 tpl=$2 url=$3; shift 3
  local body ct code
  body=$(curl -s -X "$m" -o /tmp/cap.body -w '%{http_code} %{content_type}' "$B$url" "$@")
  code=${body%% *}; ct=${body#* }
  python3 -c 'import json,sys; print(json.dumps({"method":sys.argv[1],"path":sys.argv[2],"status":int(sys.argv[3]),"contentType":sys.argv[4],"body":open("/tmp/cap.body").read()}))' "$m" "$tpl" "$code" "$ct" >> "$OUT"
}
J=(-H 'Content-Type: application/json')
orig=$(curl -s "$B/v1/rate-limit")   # put back at the end
head -c 300000 /dev/zero | tr '\0' x | sed 's/^/{"owner_id":"v1","content":"/; s/$/"}/' > /tmp/contract-big.json
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":"valid"}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":"valid","client_msg_id":"c1"}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":"valid","client_msg_id":"c1"}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":""}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":"x","bogus":1}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{'
rec POST /v1/messages /v1/messages -H 'Content-Type: text/plain' -d 'hi'
rec POST /v1/messages /v1/messages "${J[@]}" --data-binary @/tmp/contract-big.json
rec PUT /v1/messages /v1/messages "${J[@]}" -d '{}'
rec POST /v1/messages/batch /v1/messages/batch "${J[@]}" -d '{"messages":[{"owner_id":"b","content":"1"},{"owner_id":"b","content":"2","channel_id":"a/b"}]}'
rec POST /v1/private-messages /v1/private-messages "${J[@]}" -d '{"owner_id":"v1","recipient_id":"v2","content":"p"}'
rec POST '/v1/channels/{channel}/messages' /v1/channels/team-42.general/messages "${J[@]}" -d '{"owner_id":"v1","content":"c"}'
rec POST '/v1/channels/{channel}/messages' /v1/channels/a%7Bb/messages "${J[@]}" -d '{"owner_id":"v1","content":"c"}'
rec GET /v1/messages/recent '/v1/messages/recent?limit=2'
rec GET /v1/messages/recent '/v1/messages/recent?limit=0'
rec GET '/v1/channels/{channel}/messages/history' '/v1/channels/team-42.general/messages/history?limit=5'
rec GET '/v1/channels/{channel}/messages/history' '/v1/channels/team-42.general/messages/history?before=1&after=2'
rec GET '/v1/users/{id}/private-messages/history' '/v1/users/v2/private-messages/history?after=0'
rec GET '/v1/users/{id}/private-messages/recent' '/v1/users/v2/private-messages/recent'
rec PATCH '/v1/messages/{cache_id}' /v1/messages/1 "${J[@]}" -d '{"owner_id":"v1","content":"edited"}'
rec PATCH '/v1/messages/{cache_id}' /v1/messages/1 "${J[@]}" -d '{"owner_id":"v9","content":"edited"}'
rec PATCH '/v1/messages/{cache_id}' /v1/messages/1 "${J[@]}" -H 'If-Match: "1"' -d '{"owner_id":"v1","content":"edited"}'
rec PATCH '/v1/messages/{cache_id}' /v1/messages/999999 "${J[@]}" -d '{"owner_id":"v1","content":"edited"}'
rec DELETE '/v1/messages/{cache_id}' /v1/messages/2
rec DELETE '/v1/messages/{cache_id}' /v1/messages/999999999
rec DELETE '/v1/messages/{cache_id}' /v1/messages/abc
rec GET /v1/messages/stream '/v1/messages/stream' -H 'Last-Event-ID: garbage'
rec GET /v1/channels/stream '/v1/channels/stream'
rec GET /v1/rate-limit /v1/rate-limit
rec PUT /v1/rate-limit /v1/rate-limit "${J[@]}" -d '{"limit":1,"window_seconds":60}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"rl","content":"1"}'
rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"rl","content":"2"}'
rec PUT /v1/rate-limit /v1/rate-limit "${J[@]}" -d "$orig"
rec PUT /v1/rate-limit /v1/rate-limit "${J[@]}" -d '{"limit":0,"window_seconds":1}'
rec GET /healthz /healthz
rec GET /readyz /readyz
rec GET /openapi.yaml /openapi.yaml
if [ -n "${VALKEY_PID:-}" ]; then # 503s: Valkey paused for one request each
  kill -STOP "$VALKEY_PID"
  rec POST /v1/messages /v1/messages "${J[@]}" -d '{"owner_id":"v1","content":"while Valkey is paused"}'
  rec GET /readyz /readyz
  kill -CONT "$VALKEY_PID"
fi
rm -f /tmp/contract-big.json /tmp/cap.body
