#!/usr/bin/env bash
# make contract: checks api/openapi.yaml against a running ingest (make run, or CHATPIPE_URL) as
# a user of another language would:
#   1. the document served at GET /openapi.yaml is the repository's, and valid for a second
#      validator (@seriousme/openapi-schema-validator);
#   2. a TypeScript client generated from it (openapi-typescript) type-checks (tsc --strict) and,
#      through openapi-fetch, sends, batches, reads history and deletes;
#   3. the answers of a recorded run (2xx, 400, 404, 405, 413, 415, 429, and 503 while Valkey is
#      paused, when VALKEY_PID is given) validate against it with Ajv.
# Needs node and npm (apt-get install nodejs npm); the packages are pinned in package.json.
set -euo pipefail
cd "$(dirname "$0")"
base=${CHATPIPE_URL:-http://127.0.0.1:8080}
curl -sf "$base/readyz" >/dev/null || { echo "contract: no ingest answers at $base (start one with make run)" >&2; exit 1; }
[ -d node_modules ] || npm install --no-audit --no-fund --silent
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sf "$base/openapi.yaml" >"$work/served.yaml"
cmp -s "$work/served.yaml" ../../api/openapi.yaml || { echo "contract: GET /openapi.yaml differs from api/openapi.yaml" >&2; exit 1; }
echo "contract: 1. the served document is api/openapi.yaml"
node validate-doc.mjs "$work/served.yaml"
npx openapi-typescript "$work/served.yaml" -o chatpipe.d.ts >/dev/null
npx tsc -p .
echo "contract: 2. the generated TypeScript client type-checks; calling it:"
CHATPIPE_URL=$base node out/check.js
echo "contract: 3. recorded answers against the document:"
./capture.sh "$base" "$work/answers.jsonl"
node validate-responses.mjs "$work/served.yaml" "$work/answers.jsonl"
