#!/usr/bin/env bash
# The fault and stress e2e suites, ROUNDS times in a row, while stress-ng keeps every
# core busy (a busy node, not an idle CI box). Writes bench/under-load.md; exits
# non-zero if any round failed. Not part of `make test`: about 15 min a round on
# 2 cores under TCG.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
# SUITES="a.test.ts b.test.ts" narrows the set (space-separated paths).
read -r -a SUITES <<< "${SUITES:-tests/e2e/faults.test.ts tests/e2e/unresponsive-guest.test.ts tests/e2e/lifecycle-races.test.ts tests/e2e/hung-volume.test.ts}"
HOG_WORKERS=${HOG_WORKERS:-$(nproc)}
REPORT=bench/under-load.md
work=$(mktemp -d /tmp/kt-under-load-XXXXXX)

stress-ng --cpu "$HOG_WORKERS" --timeout 0 --quiet &
hog=$!
cleanup() {
  kill "$hog" 2>/dev/null || true
  wait "$hog" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "under-load: stress-ng --cpu $HOG_WORKERS running (pid $hog); $ROUNDS round(s) of: ${SUITES[*]}" >&2

write_report() {
  {
    echo "# Fault and stress suites under a CPU hog"
    echo
    echo "\`make test-under-load\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r), containerd $(containerd --version | awk '{print $3}'), QEMU TCG):"
    echo "${SUITES[*]}, $ROUNDS round(s) in a row while \`stress-ng --cpu $HOG_WORKERS\` ran throughout."
    echo "Every test takes its own host leak snapshot before and checks it after."
    echo
    echo "| round | passed | failed | failed tests | time |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
  } > "$REPORT"
}

rows=()
failed=0
for round in $(seq 1 "$ROUNDS"); do
  echo "under-load: round $round/$ROUNDS" >&2
  started=$(date +%s)
  status=0
  npx jest "${SUITES[@]}" --selectProjects e2e --runInBand --json --outputFile="$work/round-$round.json" 2>&1 | tee "$work/round-$round.log" >&2 || status=$?
  took=$(( $(date +%s) - started ))
  summary=$(node -e '
    const r = require(process.argv[1]);
    const failedNames = r.testResults.flatMap((s) => s.assertionResults.filter((a) => a.status === "failed").map((a) => a.fullName));
    console.log(`${r.numPassedTests} | ${r.numFailedTests} | ${failedNames.join("; ") || "-"}`);
  ' -- "$work/round-$round.json" 2>/dev/null || echo "? | ? | jest wrote no report")
  [ "$status" -eq 0 ] || failed=1
  rows+=("| $round | $summary | ${took} s |")
  echo "under-load: round $round: exit $status in ${took} s" >&2
  write_report # after every round: an interrupted run still leaves what it measured
done

echo "under-load: wrote $REPORT" >&2
exit "$failed"
