# make bench, row 10: the Python asyncio adapter. Sourced by tools/bench/run.sh
# (uses its helpers and variables). Each measure is side by side in one run:
#   - throughput of an aiohttp server logging 2 lines per request
#     (python_srv.py): plain, under the library with its adapter, and under the
#     library without it (REQCTX_RUNTIMES=0), wrk -t1 -c32, alternating;
#   - the adapter's added cost per async hop (python_hops.py): two tasks in two
#     requests take turns awaiting asyncio.sleep(0), with the adapter's patches
#     put in and taken out in turn inside one process (CPU ns per hop), on the
#     stock loop and on uvloop; the same carrier rule through ctypes instead of
#     the _reqctx extension; ns per call of each channel; and, with valgrind,
#     the instructions each adds per hop (exact, where the ns are noisy).
HERE=$(dirname "$0")
PY_HOPS=${PY_HOPS:-200000}

# py_load PORT PID: one wrk run; prints its req/s and the server's CPU µs per request
# (utime+stime from /proc, which a busy machine disturbs less than req/s).
py_load() {
	c0=$(awk '{ print $14 + $15 }' "/proc/$2/stat")
	out=$(wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$1/x" 2>&1)
	c1=$(awk '{ print $14 + $15 }' "/proc/$2/stat")
	echo "$out" | awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
		/requests in/ { n = $1 } /^Requests\/sec:/ { r = $2 }
		END { if (n) printf "%s %.1f\n", r, t * 1e6 / hz / n }'
}

# py_median_diff FILE: median of "on X off Y" rows' X - Y.
py_median_diff() { awk '{ print $2 - $4 }' "$1" | median; }

# py_ir MODE RUNTIMES N [uvloop]: callgrind's instructions for python_hops.py.
py_ir() {
	PYTHONHASHSEED=0 REQCTX_RUNTIMES=$2 LD_PRELOAD="$LIB" valgrind --tool=callgrind \
	    --callgrind-out-file=/dev/null "$PYTHON" "$HERE/python_hops.py" "$1" "$3" 1 ${4:-} 2>&1 |
	    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# py_ir_hop MODE RUNTIMES [uvloop]: instructions per hop (a run of 50000 less one of 10000).
py_ir_hop() {
	a=$(py_ir "$1" "$2" 10000 ${3:-})
	b=$(py_ir "$1" "$2" 50000 ${3:-})
	[ -n "$a" ] && [ -n "$b" ] && calc "($b - $a) / 40000"
}

row10() {
	say "== 9. Python asyncio: an aiohttp server logging 2 lines per request, and the cost per async hop"
	if ! [ -x "$PYTHON" ] || ! "$PYTHON" -c 'import aiohttp' 2>/dev/null || ! have wrk ||
	    ! [ -f "$B/reqctx-adapters/python/_reqctx.abi3.so" ]; then
		say "  skipped: python3, aiohttp, wrk or the Python adapter missing" \
		    "(apt-get install -y python3-aiohttp python3-dev wrk; make)"
		return
	fi
	pa=$(free_port)
	PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$HERE/python_srv.py" "$pa" >"$W/py_plain.log" 2>&1 &
	na=$!
	PIDS="$PIDS $na"
	pb=$(free_port)
	PYTHONDONTWRITEBYTECODE=1 REQCTX_LOG_FDS=1,2 LD_PRELOAD="$LIB" \
	    "$PYTHON" "$HERE/python_srv.py" "$pb" >"$W/py_pre.log" 2>&1 &
	nb=$!
	PIDS="$PIDS $nb"
	pc=$(free_port)
	PYTHONDONTWRITEBYTECODE=1 REQCTX_LOG_FDS=1,2 REQCTX_RUNTIMES=0 LD_PRELOAD="$LIB" \
	    "$PYTHON" "$HERE/python_srv.py" "$pc" >"$W/py_off.log" 2>&1 &
	nc=$!
	PIDS="$PIDS $nc"
	if ! wait_port "$pa" "$na" || ! wait_port "$pb" "$nb" || ! wait_port "$pc" "$nc"; then
		say "  skipped: an aiohttp server did not start"
		stop "$na"; stop "$nb"; stop "$nc"
		return
	fi
	: >"$W/py.plain"; : >"$W/py.pre"; : >"$W/py.off"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		py_load "$pa" "$na" >>"$W/py.plain"
		py_load "$pb" "$nb" >>"$W/py.pre"
		py_load "$pc" "$nc" >>"$W/py.off"
		r=$((r + 1))
	done
	stop "$na"; stop "$nb"; stop "$nc"
	for k in plain pre off; do
		eval "rps_$k=\$(awk '{ print \$1 }' \"$W/py.$k\" | median)"
		eval "cpu_$k=\$(awk '{ print \$2 }' \"$W/py.$k\" | median)"
	done
	say "  plain:               $(awk '{ printf "%s ", $1 }' "$W/py.plain")-> median $rps_plain req/s, $cpu_plain µs CPU per request"
	say "  preload + adapter:   $(awk '{ printf "%s ", $1 }' "$W/py.pre")-> median $rps_pre req/s, $cpu_pre µs CPU per request"
	say "  preload, no adapter: $(awk '{ printf "%s ", $1 }' "$W/py.off")-> median $rps_off req/s, $cpu_off µs CPU per request"
	grep -q '^\[req:[^u]' "$W/py_pre.log" || say "  warning: the preloaded server's log has no request's [req:...] line"
	cmd "$PYTHON tools/bench/python_srv.py PORT 2>log; REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB $PYTHON tools/bench/python_srv.py PORT2 2>log2"
	cmd "wrk -t1 -c32 -d${SECS}s http://127.0.0.1:PORT/x   # A B C A B C ..., $ROUNDS rounds (C: REQCTX_RUNTIMES=0); CPU from /proc/PID/stat"
	ratio=$(calc "$rps_pre / $rps_plain")
	row 10 "aiohttp req/s, 2 log lines: preload+adapter vs plain" "$rps_plain" "$rps_pre" "$(fmt "$ratio" %.3f)" \
		">= 0.97" "$(awk -v x="$ratio" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
	row 10 "... CPU µs per request, plain / preload+adapter" "$cpu_plain" "$cpu_pre" \
		"$(fmt "$(calc "$cpu_plain / $cpu_pre")" %.3f)" "" "information"
	row 10 "... CPU µs per request, preload alone / +adapter" "$cpu_off" "$cpu_pre" \
		"$(fmt "$(calc "$cpu_off / $cpu_pre")" %.3f)" "" "information"

	for loop in asyncio uvloop; do
		arg=""
		if [ $loop = uvloop ]; then
			"$PYTHON" -c 'import uvloop' 2>/dev/null || { say "  uvloop: skipped (apt-get install -y python3-uvloop)"; continue; }
			arg=uvloop
		fi
		LD_PRELOAD="$LIB" "$PYTHON" "$HERE/python_hops.py" toggle "$PY_HOPS" "$((ROUNDS * 2 + 1))" $arg \
		    >"$W/pyhops.$loop" 2>&1
		if ! grep -q '^on ' "$W/pyhops.$loop"; then
			say "  $loop hops: failed: $(head -c 300 "$W/pyhops.$loop")"
			continue
		fi
		x=$(awk '{ print $4 }' "$W/pyhops.$loop" | median)
		y=$(awk '{ print $2 }' "$W/pyhops.$loop" | median)
		d=$(py_median_diff "$W/pyhops.$loop")
		say "  $loop, 2 requests taking turns: without the adapter median $x ns per hop, with it $y ns;" \
		    "median of the paired differences +$(fmt "$d" %.1f) ns"
		cmd "LD_PRELOAD=$LIB $PYTHON tools/bench/python_hops.py toggle $PY_HOPS $((ROUNDS * 2 + 1)) $arg"
		row 10 "Python ns per hop ($loop): adapter's added cost" "$x ns" "$y ns" "+$(fmt "$d" %.1f) ns" \
			"<= 100" "$(awk -v x="$d" 'BEGIN { print (x <= 100) ? "met" : "MISSED" }')"
	done

	: >"$W/pyct.rows"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		o=$(REQCTX_RUNTIMES=0 LD_PRELOAD="$LIB" "$PYTHON" "$HERE/python_hops.py" loop "$PY_HOPS" 3 | awk '{ print $2 }')
		t=$(REQCTX_RUNTIMES=0 LD_PRELOAD="$LIB" "$PYTHON" "$HERE/python_hops.py" ctypes "$PY_HOPS" 3 | awk '{ print $2 }')
		echo "on $t off $o" >>"$W/pyct.rows"
		r=$((r + 1))
	done
	d=$(py_median_diff "$W/pyct.rows")
	calls=$(LD_PRELOAD="$LIB" "$PYTHON" "$HERE/python_hops.py" calls 1000000 1)
	say "  the same rule through ctypes: +$(fmt "$d" %.1f) ns per hop (median of $ROUNDS pairs of processes);" \
	    "one call: $calls"
	cmd "REQCTX_RUNTIMES=0 LD_PRELOAD=$LIB $PYTHON tools/bench/python_hops.py ctypes|loop $PY_HOPS 3; ... calls 1000000 1"
	row 10 "Python ns per hop through ctypes instead" "" "" "+$(fmt "$d" %.1f) ns" "" "information"
	row 10 "Python ns per call: _reqctx vs ctypes" "$(echo "$calls" | awk '{ print $4 }') ns" \
		"$(echo "$calls" | awk '{ print $2 }') ns" "" "" "information"

	if have valgrind; then
		off=$(py_ir_hop loop 0)
		on=$(py_ir_hop loop 1)
		ct=$(py_ir_hop ctypes 0)
		uoff=$(py_ir_hop loop 0 uvloop)
		uon=$(py_ir_hop loop 1 uvloop)
		say "  instructions per hop (callgrind): asyncio $off, with the adapter $on, through ctypes $ct;" \
		    "uvloop $uoff, with the adapter $uon"
		cmd "PYTHONHASHSEED=0 REQCTX_RUNTIMES=0|1 LD_PRELOAD=$LIB valgrind --tool=callgrind $PYTHON tools/bench/python_hops.py loop|ctypes 10000|50000 1 [uvloop]"
		row 10 "Python instructions per hop (asyncio)" "$off" "$on" "+$(calc "$on - $off")" "" "information"
		row 10 "... through ctypes instead" "$off" "$ct" "+$(calc "$ct - $off")" "" "information"
		[ -n "$uoff" ] && row 10 "Python instructions per hop (uvloop)" "$uoff" "$uon" "+$(calc "$uon - $uoff")" "" \
			"information"
	fi
}
