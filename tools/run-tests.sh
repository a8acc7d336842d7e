#!/bin/sh
# Runs each Criterion suite given on the command line, one after another, and
# prints one closing line with the totals. Exits non-zero if any suite failed.
set -u
pass=0 fail=0 rc=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$@"; do
	echo "== $(basename "$t")"
	"$t" --jobs "${CRITERION_JOBS:-2}" --short-filename >"$out" 2>&1
	st=$?
	cat "$out"
	line=$(grep -a 'Synthesis: Tested:' "$out" | tail -n 1)
	if [ -z "$line" ]; then
		echo "!! $(basename "$t"): no synthesis line (exit $st)"
		fail=$((fail + 1)); rc=1; continue
	fi
	p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
	c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
	pass=$((pass + p)); fail=$((fail + f + c))
	[ "$st" -ne 0 ] && rc=1
done
echo "reqctx: $pass passed, $fail failed"
[ "$fail" -ne 0 ] && rc=1
exit $rc
