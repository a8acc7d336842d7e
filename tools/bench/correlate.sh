#!/bin/sh
# Row 8 of make bench: what batched log correlation (issue 13) costs per log
# line, counted with callgrind. Sourced by tools/bench/run.sh (its helpers and
# variables), or run alone: B=$PWD/build sh tools/bench/correlate.sh
#
# Today's per-line cost is the prefix on an 80-byte write(2) line to stderr
# (bench_calls stderr, with and without the library). Correlation adds the
# matcher to each line start; a line that names no request line must cost
# at most twice today's. The matcher is src/correlate.c linked directly into
# bench_correlate (built here), until the write path calls it.

B=${B:-$PWD/build}
N=${BENCH_N:-100000}
W=${W:-$B/bench/run}
BIN=${BIN:-$B/bench}
LIB=${LIB:-$B/libreqctx.so}
TABLE=${TABLE:-$W/table}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# Own helpers (run.sh's have the same shape; coreutils has a fmt of its own).
c8_say() { printf '%s\n' "$*"; }
c8_cmd() { printf '  $ %s\n' "$*"; }
c8_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TABLE"; }
c8_calc() { awk "BEGIN { printf \"%s\", $1 }"; }
c8_fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }

# cg OUT FN PRELOAD CMD...: callgrind's Ir inside FN, with LD_PRELOAD=PRELOAD if not empty
# (for valgrind's client only: the tools that read its output must not be prefixed).
cg() {
	out=$1 fn=$2 pre=$3
	shift 3
	env ${pre:+LD_PRELOAD=$pre} valgrind --tool=callgrind --toggle-collect="$fn" \
		--log-file="$out.vg" --callgrind-out-file="$out" "$@" >"$out.stdout" 2>"$out.err" ||
		return 1
	sed -n 's/^summary: *//p' "$out"
}

row8() {
	c8_say "== 8. batched log correlation: instructions per log line (callgrind, $N lines)"
	if ! command -v valgrind >/dev/null 2>&1; then
		c8_say "  skipped: valgrind missing (apt-get install -y valgrind)"
		return
	fi
	mkdir -p "$W" "$BIN"
	${CC:-cc} -std=gnu11 -D_GNU_SOURCE -O2 -g -I"$SRC/src" -I"$SRC/include" -o "$BIN/bench_correlate" \
		"$SRC/tools/bench/correlate.c" "$SRC/src/correlate.c" "$SRC/src/id.c" || {
		c8_say "  could not build bench_correlate"
		return
	}
	today=""
	if [ -x "$BIN/bench_calls" ] && [ -f "$LIB" ]; then
		a=$( (cd "$W" && cg "$W/cg8.stderr.without" loop "" "$BIN/bench_calls" stderr "$N") )
		b=$( (cd "$W" && cg "$W/cg8.stderr.with" loop "$LIB" "$BIN/bench_calls" stderr "$N") )
		[ -n "$a" ] && [ -n "$b" ] && today=$(c8_calc "($b - $a) / $N")
	fi
	miss=$(cg "$W/cg8.miss" rq_corr_match "" "$BIN/bench_correlate" miss "$N") || { c8_say "  callgrind failed"; return; }
	miss=$(c8_calc "$miss / $N")
	for m in combined same; do
		t=$(cg "$W/cg8.$m" rq_corr_match "" "$BIN/bench_correlate" $m "$N") || { c8_say "  callgrind failed"; return; }
		d=$(cg "$W/cg8.$m.done" rq_corr_done "" "$BIN/bench_correlate" $m "$N")
		hits=$(sed -n 's/^matched //p' "$W/cg8.$m.stdout")
		[ "$hits" = "$N" ] || c8_say "  warning: $m matched $hits of $N lines"
		eval "hit_$m=\$(c8_calc \"\$t / \$N\")"
		eval "done_$m=\$(c8_calc \"\$d / \$N\")"
	done
	c8_say "  a line naming no request line (bench_calls' 80-byte line): +$(c8_fmt "$miss" %.1f) Ir for the matcher"
	c8_say "  an nginx combined line matched in a batch of 100 (8 request lines): $(c8_fmt "$hit_combined" %.1f) Ir;" \
		"recording its request: $(c8_fmt "$done_combined" %.1f) Ir"
	c8_say "  the same with one request line for all 100: $(c8_fmt "$hit_same" %.1f) Ir per line;" \
		"recording: $(c8_fmt "$done_same" %.1f) Ir"
	c8_cmd "valgrind --tool=callgrind --toggle-collect=rq_corr_match --callgrind-out-file=cg.out" \
		"$BIN/bench_correlate miss|combined|same $N; grep summary cg.out   # / $N; rq_corr_done: recording"
	if [ -n "$today" ]; then
		with=$(c8_calc "$today + $miss")
		ratio=$(c8_calc "$with / $today")
		c8_say "  per 80-byte write(2) line to stderr: today +$(c8_fmt "$today" %.1f) Ir;" \
			"with correlation +$(c8_fmt "$with" %.1f) Ir ($(c8_fmt "$ratio" %.2f)x)"
		c8_cmd "cd $W && [LD_PRELOAD=$LIB] valgrind --tool=callgrind --toggle-collect=loop" \
			"--callgrind-out-file=cg.out $BIN/bench_calls stderr $N; grep summary cg.out"
		c8_row 8 "line without a request line: prefix+matcher" "+$(c8_fmt "$today" %.1f) Ir" \
			"+$(c8_fmt "$with" %.1f) Ir" "$(c8_fmt "$ratio" %.2f)x" "<= 2x" \
			"$(awk -v x="$ratio" 'BEGIN { print (x <= 2) ? "met" : "MISSED" }')"
	else
		c8_say "  (today's per-line cost needs make bench's bench_calls and libreqctx.so)"
		c8_row 8 "matcher, line without a request line" "" "+$(c8_fmt "$miss" %.1f) Ir" "" "" info
	fi
	c8_row 8 "matcher, combined line matched (batch)" "" "$(c8_fmt "$hit_combined" %.1f) Ir" "" "" info
	c8_row 8 "matcher, 100 identical lines (batch)" "" "$(c8_fmt "$hit_same" %.1f) Ir" "" "" info
}

case " ${BENCH_ROWS:-8} " in
*" 8 "*) row8 ;;
esac
