#!/usr/bin/env bash
# Installs the servers chatpipe's tests and local run need, when they are missing:
# valkey-server (Debian bookworm-backports), PostgreSQL, Chromium (the console's browser tests)
# and, with --prometheus, Prometheus.
# As root it installs them with apt; otherwise it prints the exact commands and fails.
set -euo pipefail

want_prometheus=0
for arg in "$@"; do
  case "$arg" in
    --prometheus) want_prometheus=1 ;;
    -h|--help) echo "usage: scripts/deps.sh [--prometheus]"; exit 0 ;;
    *) echo "deps: unknown argument $arg" >&2; exit 2 ;;
  esac
done

have_pg() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
have_valkey() { command -v valkey-server >/dev/null && command -v valkey-cli >/dev/null && command -v valkey-benchmark >/dev/null; }
have_chromium() { command -v chromium >/dev/null; }
have_prom() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

# debian_uri reads the URI of the machine's existing Debian entry, so backports come from the same mirror.
debian_uri() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    uri=$(awk '
      /^URIs:/ { u=$2 }
      /^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") s=1 }
      /^$/ { if (s && u) { print u; exit } u=""; s=0 }
      END { if (s && u) print u }' "$f" | head -n1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    uri=$(awk '$1=="deb" && $3=="bookworm" { for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}

missing=()
have_valkey || missing+=(valkey)
have_pg || missing+=(postgresql)
have_chromium || missing+=(chromium)
[ "$want_prometheus" = 1 ] && ! have_prom && missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

uri=$(debian_uri)
uri=${uri:-http://deb.debian.org/debian}
backports="Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

if [ "$(id -u)" != 0 ]; then
  {
    echo "deps: missing: ${missing[*]}. Install as root with:"
    echo "  printf '%s\n' '${backports//$'\n'/\' \'}' > /etc/apt/sources.list.d/bookworm-backports.sources"
    echo "  apt-get update"
    [[ " ${missing[*]} " == *" valkey "* ]] && echo "  apt-get install -y -t bookworm-backports valkey-server valkey-tools"
    [[ " ${missing[*]} " == *" postgresql "* ]] && echo "  apt-get install -y postgresql"
    [[ " ${missing[*]} " == *" chromium "* ]] && echo "  apt-get install -y --no-install-recommends chromium"
    [[ " ${missing[*]} " == *" prometheus "* ]] && echo "  apt-get install -y prometheus"
  } >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Packages must not start system-wide services: chatpipe runs its own throwaway servers.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT

echo "deps: installing ${missing[*]}" >&2
if [[ " ${missing[*]} " == *" valkey "* ]] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list.d/; then
  printf '%s\n' "$backports" > /etc/apt/sources.list.d/bookworm-backports.sources
fi
apt-get update -qq
pkgs=()
[[ " ${missing[*]} " == *" postgresql "* ]] && pkgs+=(postgresql)
[[ " ${missing[*]} " == *" prometheus "* ]] && pkgs+=(prometheus)
[[ " ${missing[*]} " == *" chromium "* ]] && pkgs+=(chromium)
if [[ " ${missing[*]} " == *" valkey "* ]]; then
  apt-get install -y -qq -t bookworm-backports valkey-server valkey-tools >/dev/null
fi
[ ${#pkgs[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
have_valkey || { echo "deps: valkey-server still missing after install" >&2; exit 1; }
have_pg || { echo "deps: postgres still missing after install" >&2; exit 1; }
have_chromium || { echo "deps: chromium still missing after install" >&2; exit 1; }
echo "deps: ok" >&2
