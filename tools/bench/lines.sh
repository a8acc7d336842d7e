# tools/bench/lines.sh: what a multi-line log write costs under the library,
# in system calls and time, next to the same write without it. Sourced by
# tools/bench/run.sh, whose helpers and variables it uses and whose summary
# gets its rows ("lines"); BENCH_LINES=0 skips it.
#
#   - one write(2) of BENCH_LINES_MB (default 100) MB of 80-byte lines into a
#     pipe that is a log (fd 1, REQCTX_LOG_FDS=1; `cat >/dev/null` reads it, as
#     a log shipper would, and no disk writeback blurs the times):
#     tools/bench/bigwrite.c times the writes itself;
#   - `cat` of 3,000,000 `seq` lines (22 MB of 7-byte lines) into a pipe: cat
#     writes 128 KB at a time, so each write holds about 18,000 lines.
#
# System calls are counted under strace, in a run of their own; times are
# medians of BENCH_ROUNDS alternating runs (without, with, without, ...).

LN_MB=${BENCH_LINES_MB:-100}

# ln_strace OUT PRELOAD CMD...: write/writev calls on fd 1 of CMD, into a pipe.
ln_strace() {
	o=$1
	p=$2
	shift 2
	if [ "$p" = with ]; then
		strace -f -qq -e trace=write,writev -o "$o" -E LD_PRELOAD="$LIB" -E REQCTX_LOG_FDS=1 \
			"$@" 2>/dev/null | { head -c 14 >"$W/ln.out"; cat >/dev/null; }
	else
		strace -f -qq -e trace=write,writev -o "$o" "$@" 2>/dev/null | cat >/dev/null
	fi
	grep -cE '^[0-9]+ +writev?\(1,' "$o"
}

# ln_cat_strace OUT PRELOAD: write/writev calls of cat of the seq file into a pipe.
ln_cat_strace() {
	if [ "$2" = with ]; then
		strace -qq -e trace=write,writev -o "$1" -E LD_PRELOAD="$LIB" -E REQCTX_LOG_FDS=1 \
			cat "$W/ln.seq" | cat >/dev/null
	else
		strace -qq -e trace=write,writev -o "$1" cat "$W/ln.seq" | cat >/dev/null
	fi
	grep -cE '^writev?\(1,' "$1"
}

# ln_cat PRELOAD: ns for cat of the seq file into a pipe read by a plain cat.
ln_cat() {
	t0=$(now_ns)
	if [ "$1" = with ]; then
		LD_PRELOAD="$LIB" REQCTX_LOG_FDS=1 cat "$W/ln.seq" | cat >/dev/null
	else
		cat "$W/ln.seq" | cat >/dev/null
	fi
	t1=$(now_ns)
	echo $((t1 - t0))
}

row_lines() {
	say "== lines. one multi-line write: system calls and time (${ROUNDS} alternating rounds)"
	if ! have strace || ! have cc; then
		say "  skipped: strace or cc missing (apt-get install -y strace gcc)"
		return
	fi
	cc -O2 -o "$W/bench_bigwrite" "$(dirname "$0")/bigwrite.c" || return
	bw=$W/bench_bigwrite
	a=$(ln_strace "$W/ln.st0" without "$bw" "$LN_MB" 80)
	b=$(ln_strace "$W/ln.st1" with "$bw" "$LN_MB" 80)
	head -c 14 "$W/ln.out" | grep -q '^\[req:' || say "  warning: the lines carry no prefix: the library was not active"
	: >"$W/ln.t0"; : >"$W/ln.t1"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		"$bw" "$LN_MB" 80 2>"$W/ln.ns" | cat >/dev/null
		awk '{ print $2 }' "$W/ln.ns" >>"$W/ln.t0"
		LD_PRELOAD="$LIB" REQCTX_LOG_FDS=1 "$bw" "$LN_MB" 80 2>"$W/ln.ns" | cat >/dev/null
		awk '{ print $2 }' "$W/ln.ns" >>"$W/ln.t1"
		r=$((r + 1))
	done
	rm -f "$W/ln.ns" "$W/ln.out"
	ta=$(median <"$W/ln.t0")
	tb=$(median <"$W/ln.t1")
	say "  write(2) of $LN_MB MB of 80-byte lines into a pipe: $a -> $b system calls;" \
		"$(fmt "$(calc "$ta / 1e6")" %.1f) -> $(fmt "$(calc "$tb / 1e6")" %.1f) ms in the writes"
	cmd "[LD_PRELOAD=$LIB REQCTX_LOG_FDS=1] strace -f -e trace=write,writev -o st.txt" \
		"$bw $LN_MB 80 | cat >/dev/null; grep -cE 'writev?\\(1,' st.txt"
	row lines "syscalls, one write(2) of $LN_MB MB of lines" "$a" "$b" "$(calc "$b / $a")x" "" info
	row lines "time in that write" "$(fmt "$(calc "$ta / 1e6")" %.1f) ms" \
		"$(fmt "$(calc "$tb / 1e6")" %.1f) ms" "$(fmt "$(calc "$tb / $ta")" %.2f)x" "" info
	seq 1 3000000 >"$W/ln.seq"
	a=$(ln_cat_strace "$W/ln.st2" without)
	b=$(ln_cat_strace "$W/ln.st3" with)
	: >"$W/ln.c0"; : >"$W/ln.c1"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		ln_cat without >>"$W/ln.c0"
		ln_cat with >>"$W/ln.c1"
		r=$((r + 1))
	done
	ca=$(median <"$W/ln.c0")
	cb=$(median <"$W/ln.c1")
	say "  cat of 22 MB of 7-byte lines into a pipe: $a -> $b write system calls;" \
		"$(fmt "$(calc "$ca / 1e6")" %.1f) -> $(fmt "$(calc "$cb / 1e6")" %.1f) ms"
	cmd "seq 1 3000000 >seq.txt; [LD_PRELOAD=$LIB REQCTX_LOG_FDS=1] strace -e trace=write,writev" \
		"-o st.txt cat seq.txt | cat >/dev/null; grep -c write st.txt"
	row lines "write syscalls, cat of 3M short lines" "$a" "$b" "$(calc "$b / $a")x" "same" \
		"$([ "$a" = "$b" ] && echo met || echo MISSED)"
	row lines "time, cat of 3M short lines" "$(fmt "$(calc "$ca / 1e6")" %.1f) ms" \
		"$(fmt "$(calc "$cb / 1e6")" %.1f) ms" "$(fmt "$(calc "$cb / $ca")" %.2f)x" "" info
	rm -f "$W/ln.seq"
}

[ "${BENCH_LINES:-1}" = 0 ] || row_lines
