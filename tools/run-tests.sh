#!/bin/sh
# Runs each Criterion suite given on the command line, one after another, and
# prints one closing line with the totals. The counts come from each suite's
# TAP report (Criterion's --tap), not from its human-readable output: a test
# is passed only on an "ok" line without a SKIP or TODO directive, and a suite
# whose report is missing, lacks its plan line, or holds fewer results than
# its plan (it crashed) counts every missing test as failed. Exits non-zero if
# any suite failed.
#
# An argument SUITE=FILTER runs only the tests of SUITE that match the
# Criterion pattern FILTER (e.g. 'hardening/!(allocator*)'); the tests it
# leaves out are counted and named as excluded, not failed. make test passes
# no filter; make test-libsan excludes, with its reasons in the Makefile, the
# tests that cannot hold with a sanitized library.
set -u
pass=0 fail=0 excl=0 rc=0
out=$(mktemp)
tap=$(mktemp)
trap 'rm -f "$out" "$tap"' EXIT
for arg in "$@"; do
	t=${arg%%=*}
	filter=
	[ "$t" != "$arg" ] && filter=${arg#*=}
	echo "== $(basename "$t")${filter:+ (only $filter)}"
	: >"$tap"
	if [ -n "$filter" ]; then
		"$t" --jobs "${CRITERION_JOBS:-2}" --short-filename --tap="$tap" --filter "$filter" >"$out" 2>&1
	else
		"$t" --jobs "${CRITERION_JOBS:-2}" --short-filename --tap="$tap" >"$out" 2>&1
	fi
	st=$?
	cat "$out"
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$tap" | head -n 1)
	ok=$(grep -c '^ok ' "$tap")
	skipped=$(grep '^ok ' "$tap" | grep -ci '# *\(skip\|todo\)')
	if [ -n "$filter" ] && [ "$skipped" -ne 0 ]; then
		grep '^ok .*# *[Ss][Kk][Ii][Pp]' "$tap" | sed 's/^ok - \([^ ]*\).*/   excluded: \1/'
		excl=$((excl + skipped))
		ok=$((ok - skipped))
		plan=$((plan - skipped))
		skipped=0
	fi
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
if [ "$excl" -ne 0 ]; then
	echo "reqctx: $pass passed, $fail failed, $excl excluded"
else
	echo "reqctx: $pass passed, $fail failed"
fi
exit $rc
