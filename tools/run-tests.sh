#!/bin/sh
# Runs each Criterion suite given on the command line, one after another, and
# prints one closing line with the totals. The counts come from each suite's
# TAP report (Criterion's --tap), not from its human-readable output: a test
# is passed only on an "ok" line without a SKIP or TODO directive, and a suite
# whose report is missing, lacks its plan line, or holds fewer results than
# its plan (it crashed) counts every missing test as failed. Exits non-zero if
# any suite failed.
set -u
pass=0 fail=0 rc=0
out=$(mktemp)
tap=$(mktemp)
trap 'rm -f "$out" "$tap"' EXIT
for t in "$@"; do
	echo "== $(basename "$t")"
	: >"$tap"
	"$t" --jobs "${CRITERION_JOBS:-2}" --short-filename --tap="$tap" >"$out" 2>&1
	st=$?
	cat "$out"
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$tap" | head -n 1)
	ok=$(grep -c '^ok ' "$tap")
	skipped=$(grep '^ok ' "$tap" | grep -ci '# *\(skip\|todo\)')
	notok=$(grep -c '^not ok ' "$tap")
	p=$((ok - skipped))
	f=$((notok + skipped))
	if [ -z "$plan" ]; then
		echo "!! $(basename "$t"): no TAP plan (exit $st)"
		f=$((f + 1))
	elif [ $((ok + notok)) -lt "$plan" ]; then
		echo "!! $(basename "$t"): $((ok + notok)) results of $plan planned (exit $st)"
		f=$((f + plan - ok - notok))
	fi
	[ "$skipped" -ne 0 ] && echo "!! $(basename "$t"): $skipped skipped tests count as failed"
	pass=$((pass + p)); fail=$((fail + f))
	{ [ "$st" -ne 0 ] || [ "$f" -ne 0 ]; } && rc=1
done
echo "reqctx: $pass passed, $fail failed"
exit $rc
