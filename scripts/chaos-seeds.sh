#!/usr/bin/env bash
# Runs the failover chaos runs with many seeds and prints how many passed, run by run and as a
# table at the end: the evidence that a chaos run passes because the product holds, not by luck.
#
#   make chaos-seeds                        # seeds 1..20 of each run
#   CHAOS_SEEDS=5 CHAOS_FIRST_SEED=100 make chaos-seeds
#   CHAOS_TESTS="TestChaosCluster" make chaos-seeds
#   CHAOS_SEEDS=1 CHAOS_FIRST_SEED=14 CHAOS_REV=abc123 make chaos-seeds   # one seed, one commit
#
# Each run has its make-test length unless CHAOS_DURATION is set. The log of a failed run stays
# in $CHAOS_OUT (default .chaos-seeds/); passed runs' logs are removed. Exit status 1 when any
# run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

seeds=${CHAOS_SEEDS:-20}
first=${CHAOS_FIRST_SEED:-1}
tests=${CHAOS_TESTS:-TestChaosCluster TestChaosSentinel TestChaosSentinelSlowLinks TestChaos}
out=${CHAOS_OUT:-.chaos-seeds}
case "$seeds$first" in *[!0-9]*|'') echo "chaos-seeds: CHAOS_SEEDS and CHAOS_FIRST_SEED must be numbers" >&2; exit 2 ;; esac
if [ "$seeds" -lt 1 ] || [ "$seeds" -gt 1000 ]; then echo "chaos-seeds: CHAOS_SEEDS must be 1..1000" >&2; exit 2; fi

# The runs build the binaries from a checkout of their own (a git worktree of HEAD, or of
# CHAOS_REV), so that editing the working tree meanwhile changes nothing of what is measured.
mkdir -p "$out"
out=$(realpath "$out")
rev=$(git rev-parse --verify "${CHAOS_REV:-HEAD}^{commit}") || exit 2
src="$out/src"
git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"
git worktree add --detach "$src" "$rev" >/dev/null || exit 1
trap 'git worktree remove --force "$src" >/dev/null 2>&1' EXIT
note=""
if [ -z "${CHAOS_REV:-}" ] && ! git diff --quiet HEAD --; then note=" (uncommitted changes are not part of the runs)"; fi
echo "chaos-seeds: commit $(git rev-parse --short "$rev")$note"
bin=$out/chaos.test
echo "chaos-seeds: building the chaos suite"
(cd "$src" && go test -c -o "$bin" ./internal/chaos) || exit 1

declare -A passed failed
total=$((seeds * $(wc -w <<<"$tests")))
n=0
start=$SECONDS
for ((s = first; s < first + seeds; s++)); do
  for t in $tests; do
    n=$((n + 1))
    log="$out/$t-seed$s.log"
    t0=$SECONDS
    (cd "$src/internal/chaos" && CHAOS_SEED=$s CHAOS_SENTINEL_SLOW=1 "$bin" -test.run "^$t\$" -test.count=1 -test.v -test.timeout 15m) >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && grep -q "^--- PASS: $t " "$log"; then
      passed[$t]=$((${passed[$t]:-0} + 1))
      verdict=pass
      rm -f "$log"
    else
      failed[$t]="${failed[$t]:-}$s "
      verdict="FAIL (log: $log)"
    fi
    printf 'chaos-seeds: [%d/%d] seed %-4d %-28s %-4s %3ds  (%dm elapsed)\n' "$n" "$total" "$s" "$t" "$verdict" $((SECONDS - t0)) $(((SECONDS - start) / 60))
  done
done

echo
printf '%-28s %-8s %s\n' run passed "failed seeds"
bad=0
for t in $tests; do
  printf '%-28s %-8s %s\n' "$t" "${passed[$t]:-0}/$seeds" "${failed[$t]:--}"
  [ -n "${failed[$t]:-}" ] && bad=1
done
echo "seeds $first..$((first + seeds - 1)), commit $(git rev-parse --short "$rev"), $(((SECONDS - start) / 60)) min"
rm -f "$bin"
exit $bad
