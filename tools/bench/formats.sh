# tools/bench/formats.sh: what a log line costs in each REQCTX_FORMAT, in
# user-space instructions (callgrind, inside bench_calls' loop), next to the
# same write(2) without the library. Sourced by tools/bench/run.sh, whose
# helpers and variables it uses and whose summary gets its rows ("formats");
# BENCH_FORMATS=0 skips it.
#
#   - an 80-byte text line (bench_calls stderr) in prefix, logfmt and json
#     (json: the prefix, after the look that finds no JSON object);
#   - an 80-byte JSON object line (bench_calls stderr-json) in json, prefix
#     and logfmt.

# fm_ir MODE FORMAT: Ir inside loop() for N calls (FORMAT "-": without the library).
fm_ir() {
	out=$W/cg.fmt.$1.$2
	if [ "$2" = - ]; then
		valgrind --tool=callgrind --toggle-collect=loop --log-file="$out.vg" \
			--callgrind-out-file="$out" "$BIN/bench_calls" "$1" "$N" 2>"$out.err" >/dev/null
	else
		REQCTX_FORMAT=$2 REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB valgrind --tool=callgrind \
			--toggle-collect=loop --log-file="$out.vg" --callgrind-out-file="$out" \
			"$BIN/bench_calls" "$1" "$N" 2>"$out.err" >/dev/null
	fi
	[ -f "$out" ] || return 1
	sed -n 's/^summary: *//p' "$out"
}

row_formats() {
	say "== formats. instructions per 80-byte log line written with write(2), per REQCTX_FORMAT (callgrind, $N calls)"
	if ! have valgrind; then
		say "  skipped: valgrind missing (apt-get install -y valgrind)"
		return
	fi
	for m in stderr stderr-json; do
		a=$(fm_ir $m -) || { say "  $m: callgrind failed"; continue; }
		for f in prefix logfmt json; do
			b=$(fm_ir $m $f) || { say "  $m $f: callgrind failed"; continue; }
			base=$(calc "$a / $N")
			with=$(calc "$b / $N")
			d=$(calc "($b - $a) / $N")
			what="$([ $m = stderr ] && echo text || echo JSON) line, REQCTX_FORMAT=$f"
			say "  $what: $(fmt "$base" %.1f) -> $(fmt "$with" %.1f) Ir/call, added $(fmt "$d" %.1f)" \
				"; first bytes: $(head -c 40 "$W/cg.fmt.$m.$f.err" | tr -d '\n')"
			row formats "$what" "$(fmt "$base" %.1f) Ir" "$(fmt "$with" %.1f) Ir" \
				"+$(fmt "$d" %.1f) Ir/call" "" info
		done
	done
	cmd "cd $W && REQCTX_FORMAT=json REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB valgrind --tool=callgrind" \
		"--toggle-collect=loop --callgrind-out-file=cg.out $BIN/bench_calls stderr-json $N 2>x.err; grep summary cg.out"
}

[ "${BENCH_FORMATS:-1}" = 0 ] || row_formats
