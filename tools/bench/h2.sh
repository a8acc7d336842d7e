# Sourced by tools/bench/run.sh for row 9 (BENCH_ROWS=9): what the HTTP/2
# scanner and echo planner (src/h2.c, src/hpack.c) cost, in callgrind
# instructions, outside any server. Two runs of different lengths, so that
# start-up cancels out.

h2ir() { # h2ir N MODE: total Ir of bench_h2cost
	out=$W/cg.h2.$1.$2
	valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/bench_h2cost" "$1" "$2" \
		>/dev/null 2>"$out.err" || return 1
	sed -n 's/^summary: *//p' "$out"
}

row9() {
	say "== 9. HTTP/2 scanner and planner, instructions per request and per response (callgrind)"
	if ! have valgrind; then
		say "  skipped: valgrind missing (apt-get install -y valgrind)"
		return
	fi
	a=$(h2ir 1000 1) && b=$(h2ir 2000 1) && c=$(h2ir 1000 3) && d=$(h2ir 2000 3) || {
		say "  callgrind failed"
		return
	}
	rd=$(calc "($b - $a) / 1000")
	wr=$(calc "($d - $c) / 1000 - $rd")
	say "  read a browser's request (HEADERS, HPACK; and a RST_STREAM): $(fmt "$rd" %.0f) Ir"
	say "  plan, lay out and commit an nginx-style response (HEADERS + DATA, ID added): $(fmt "$wr" %.0f) Ir"
	cmd "valgrind --tool=callgrind $BIN/bench_h2cost 2000 3   # minus the run of 1000; mode 1: reads only"
	row 9 "HTTP/2 request read (HPACK)" "" "$(fmt "$rd" %.0f) Ir" "" "" info
	row 9 "HTTP/2 response planned + committed" "" "$(fmt "$wr" %.0f) Ir" "" "" info
}
