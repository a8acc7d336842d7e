#!/bin/sh
# Rows "corr" of make bench: what batched log correlation (issue 13) costs per
# log line, counted with callgrind. Sourced by tools/bench/run.sh (its helpers
# and variables), or run alone: B=$PWD/build sh tools/bench/correlate.sh
#
# Two measures:
# - the write path itself (bench_corrwrite under the library, callgrind
#   toggled on its write(2) calls): plain, REQCTX_CORRELATE=0 (today's
#   per-line cost) and REQCTX_CORRELATE=1, for an 80-byte line that names no
#   request line written alone and in batches of 100, and for batches of 100
#   nginx combined lines each naming a request just served. A line that
#   names no request line must cost at most twice today's;
# - the matcher alone (src/correlate.c linked into bench_correlate): a line
#   that names none, a combined line matched, 100 identical request lines.

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
	env ${pre:+LD_PRELOAD=$pre REQCTX_LOG_FDS=1,2} valgrind --tool=callgrind --toggle-collect="$fn" \
		--log-file="$out.vg" --callgrind-out-file="$out" "$@" >"$out.stdout" 2>"$out.err" ||
		return 1
	sed -n 's/^summary: *//p' "$out"
}

rowmatch() {
	c8_say "== corr. batched log correlation: the matcher alone, instructions per line (callgrind, $N lines)"
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
	c8_row corr "matcher, line without a request line" "" "+$(c8_fmt "$miss" %.1f) Ir" "" "" info
	c8_row corr "matcher, combined line matched (batch)" "" "$(c8_fmt "$hit_combined" %.1f) Ir" "" "" info
	c8_row corr "matcher, 100 identical lines (batch)" "" "$(c8_fmt "$hit_same" %.1f) Ir" "" "" info
}

# cw MODE PRELOAD CORRELATE: Ir per line of bench_corrwrite MODE under callgrind.
cw() {
	t=$(cd "$W" && export REQCTX_CORRELATE="$3" && cg "$W/cgw.$1.$3${2:+.pre}" emit "$2" \
		"$BIN/bench_corrwrite" "$1" "$N") || return 1
	c8_calc "$t / $N"
}

rowcw() {
	c8_say "== corr. batched log correlation on the write path: instructions per log line (callgrind, $N lines)"
	if ! command -v valgrind >/dev/null 2>&1 || ! [ -x "$BIN/bench_corrwrite" ] || ! [ -f "$LIB" ]; then
		c8_say "  skipped: needs valgrind, make bench's bench_corrwrite and libreqctx.so"
		return
	fi
	for m in line batch-miss batch; do
		p=$(cw $m "" 1) && t=$(cw $m "$LIB" 0) && c=$(cw $m "$LIB" 1) || {
			c8_say "  callgrind failed ($m): $(tail -n 2 "$W"/cgw.$m.*.err 2>/dev/null)"
			return
		}
		today=$(c8_calc "$t - $p") with=$(c8_calc "$c - $p")
		ratio=$(c8_calc "$with / $today")
		c8_say "  $m: plain $(c8_fmt "$p" %.1f) Ir; the library +$(c8_fmt "$today" %.1f) Ir today" \
			"(REQCTX_CORRELATE=0), +$(c8_fmt "$with" %.1f) Ir with correlation ($(c8_fmt "$ratio" %.2f)x)"
		case $m in
		batch) c8_row corr "write path, combined lines matched in batches of 100" \
			"+$(c8_fmt "$today" %.1f) Ir" "+$(c8_fmt "$with" %.1f) Ir" "$(c8_fmt "$ratio" %.2f)x" "" info ;;
		*) c8_row corr "write path, $m, no request line" "+$(c8_fmt "$today" %.1f) Ir" \
			"+$(c8_fmt "$with" %.1f) Ir" "$(c8_fmt "$ratio" %.2f)x" "<= 2x" \
			"$(awk -v x="$ratio" 'BEGIN { print (x <= 2) ? "met" : "MISSED" }')" ;;
		esac
	done
	c8_cmd "cd $W && REQCTX_CORRELATE=0|1 [LD_PRELOAD=$LIB] valgrind --tool=callgrind --toggle-collect=emit" \
		"--callgrind-out-file=cg.out $BIN/bench_corrwrite line|batch-miss|batch $N; grep summary cg.out   # / $N"
}

case " ${BENCH_ROWS:-corr} " in
*" corr "*) rowcw; rowmatch ;;
esac
