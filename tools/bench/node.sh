# make bench, row 8: the Node adapter. Sourced by tools/bench/run.sh (uses its
# helpers and variables). Three measures, each side by side in one run:
#   - throughput of a Node server logging 2 lines per request (node_srv.js):
#     plain, under the library without the adapter (REQCTX_RUNTIMES=0), and
#     under the library with it; wrk -t1 -c32, the three alternating for
#     NODE_ROUNDS rounds; the ratio is the median of each round's ratio;
#   - the adapter's added CPU time per async hop (node_hops.js time): await,
#     nextTick, setImmediate, setTimeout(0), a promise chain; plain and with
#     the adapter alternating for NODE_ROUNDS runs, medians and spread, and
#     an empty async_hooks init hook beside them (what Node's own hook
#     machinery costs, which any adapter built on async_hooks, and
#     AsyncLocalStorage, pays);
#   - callgrind instructions per hop, which repeat exactly (valgrind on node
#     needs --smc-check=all-non-file; --single-threaded keeps V8's compiler
#     on the main thread and three warm-up runs keep it out of the count),
#     and per request of the server (the same three ways).
# BENCH_NODE_ROUNDS (default 11) sets NODE_ROUNDS; BENCH_NODE_CALLGRIND=0
# skips the callgrind counts.
NODE=${NODE:-/usr/bin/node}
HERE=$(dirname "$0")
NODE_ROUNDS=${BENCH_NODE_ROUNDS:-11}
HOP_KINDS="await nexttick immediate timeout0 chain"

# spread [FORMAT]: "min..max" of the numbers on stdin
spread() {
	sort -g | awk -v f="${1:-%s}" 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf f ".." f, lo, hi }'
}

# cpu_ticks PID: user + system clock ticks the process has used
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }

# rps_cpu PORT PID: "REQ/S CPU-US-PER-REQUEST" of one wrk run against the server PID.
rps_cpu() {
	t0=$(cpu_ticks "$2")
	wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$1/x" >"$W/wrk.out" 2>&1
	t1=$(cpu_ticks "$2")
	awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" '
		/ requests in / { n = $1 } /^Requests\/sec:/ { r = $2 }
		END { if (n && r) printf "%s %.2f\n", r, (t1 - t0) * 1e6 / hz / n }' "$W/wrk.out"
}

# node_env VARIANT: the environment for node in variant plain, lib or adapter.
node_env() {
	case $1 in
	plain) echo "X_REQCTX_BENCH=plain" ;;
	empty) echo "NODE_OPTIONS=--require=$(cd "$HERE" && pwd)/node_emptyhook.js" ;;
	lib) echo "REQCTX_RUNTIMES=0 REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB" ;;
	adapter) echo "REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB" ;;
	esac
}

row8_throughput() {
	for v in plain lib adapter; do
		p=$(free_port)
		# shellcheck disable=SC2046
		env $(node_env $v) "$NODE" "$HERE/node_srv.js" "$p" >"$W/node_$v.log" 2>&1 &
		eval "pid_$v=$! port_$v=$p"
		PIDS="$PIDS $!"
	done
	for v in plain lib adapter; do
		eval "p=\$port_$v n=\$pid_$v"
		if ! wait_port "$p" "$n"; then
			say "  skipped: the $v Node server did not start"
			for s in plain lib adapter; do eval "stop \$pid_$s"; done
			return 1
		fi
	done
	for f in plain lib adapter ratio libratio cpu.plain cpu.lib cpu.adapter cpuratio; do : >"$W/node.$f"; done
	r=1
	while [ $r -le "$NODE_ROUNDS" ]; do
		for v in plain lib adapter; do
			eval "rps_cpu \$port_$v \$pid_$v" >"$W/node.one"
			read -r q u <"$W/node.one" || { q=""; u=""; }
			eval "q_$v=\$q u_$v=\$u"
			[ -n "$q" ] && echo "$q" >>"$W/node.$v" && echo "$u" >>"$W/node.cpu.$v"
		done
		if [ -n "$q_plain" ] && [ -n "$q_lib" ] && [ -n "$q_adapter" ]; then
			echo "$(calc "$q_adapter / $q_plain")" >>"$W/node.ratio"
			echo "$(calc "$q_lib / $q_plain")" >>"$W/node.libratio"
			echo "$(calc "$u_plain / $u_adapter")" >>"$W/node.cpuratio"
		fi
		r=$((r + 1))
	done
	for s in plain lib adapter; do eval "stop \$pid_$s"; done
	a=$(median <"$W/node.plain"); b=$(median <"$W/node.lib"); c=$(median <"$W/node.adapter")
	ratio=$(median <"$W/node.ratio"); libratio=$(median <"$W/node.libratio"); cpuratio=$(median <"$W/node.cpuratio")
	say "  plain:           median $a req/s ($(spread <"$W/node.plain")), $(median <"$W/node.cpu.plain") CPU us/request ($(spread <"$W/node.cpu.plain"))"
	say "  library only:    median $b req/s ($(spread <"$W/node.lib")), $(median <"$W/node.cpu.lib") CPU us/request ($(spread <"$W/node.cpu.lib"))"
	say "  library+adapter: median $c req/s ($(spread <"$W/node.adapter")), $(median <"$W/node.cpu.adapter") CPU us/request ($(spread <"$W/node.cpu.adapter"))"
	say "  per-round ratios to plain: library only $(fmt "$libratio" %.3f) ($(spread %.3f <"$W/node.libratio")), library+adapter $(fmt "$ratio" %.3f) ($(spread %.3f <"$W/node.ratio")); CPU per request, plain / library+adapter: $(fmt "$cpuratio" %.3f) ($(spread %.3f <"$W/node.cpuratio"))"
	grep -q '^\[req:' "$W/node_adapter.log" || say "  warning: the preloaded server's log has no [req:...] lines"
	cmd "$NODE tools/bench/node_srv.js PORT >log   # also REQCTX_RUNTIMES=0 LD_PRELOAD=$LIB, and LD_PRELOAD=$LIB"
	cmd "wrk -t1 -c32 -d${SECS}s http://127.0.0.1:PORT/x   # plain lib adapter, x $NODE_ROUNDS rounds"
	row 8 "Node req/s, 2 log lines: library only vs plain" "$a" "$b" "$(fmt "$libratio" %.3f)" "" info
	row 8 "Node req/s, 2 log lines: library+adapter vs plain" "$a" "$c" "$(fmt "$ratio" %.3f)" ">= 0.97" \
		"$(awk -v x="$ratio" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
	row 8 "Node CPU per request: plain / library+adapter" "$(median <"$W/node.cpu.plain") us" \
		"$(median <"$W/node.cpu.adapter") us" "$(fmt "$cpuratio" %.3f)" "" info
}

row8_hops() {
	for v in plain empty adapter; do : >"$W/hops.$v"; done
	r=1
	while [ $r -le "$NODE_ROUNDS" ]; do
		for v in plain empty adapter; do
			# shellcheck disable=SC2046
			env $(node_env $v) REQCTX_LOG_FDS=9 "$NODE" "$HERE/node_hops.js" time 1000000 3 >>"$W/hops.$v"
		done
		r=$((r + 1))
	done
	for k in $HOP_KINDS; do
		for v in plain empty adapter; do
			awk -v k=$k '$1 == k { print $2 }' "$W/hops.$v" >"$W/hops.$v.$k"
		done
		x=$(median <"$W/hops.plain.$k"); e=$(median <"$W/hops.empty.$k"); y=$(median <"$W/hops.adapter.$k")
		d=$(calc "$y - $x")
		say "  $k: plain $x ns ($(spread <"$W/hops.plain.$k")), empty init hook $e ns ($(spread <"$W/hops.empty.$k")), adapter $y ns ($(spread <"$W/hops.adapter.$k")): $(fmt "$d" %+.1f) ns per hop, of which Node's hooks $(fmt "$(calc "$e - $x")" %+.1f)"
		row 8 "Node CPU ns per $k hop: adapter's added cost" "$x ns" "$y ns" "$(fmt "$d" %+.1f) ns" "<= 100" \
			"$(awk -v x="$d" 'BEGIN { print (x <= 100) ? "met" : "MISSED" }')"
	done
	cmd "$NODE tools/bench/node_hops.js time 1000000 3   # also NODE_OPTIONS=--require tools/bench/node_emptyhook.js, and LD_PRELOAD=$LIB; x $NODE_ROUNDS"
}

# hops_ir VARIANT: callgrind Ir per hop, "KIND IR" lines, 50000 hops after three warm-up runs.
hops_ir() {
	out=$W/cgh.$1
	# shellcheck disable=SC2046
	env $(node_env "$1") REQCTX_LOG_FDS=9 HOPS_WARM=3 valgrind --tool=callgrind --smc-check=all-non-file \
		--zero-before=uv_os_getpriority --dump-before=uv_os_gethostname --callgrind-out-file="$out" \
		"$NODE" --single-threaded "$HERE/node_hops.js" mark 50000 >"$out.kinds" 2>"$out.err" || return 1
	i=1
	for k in $(cat "$out.kinds"); do
		[ -f "$out.$i" ] || return 1
		echo "$k $(calc "$(sed -n 's/^summary: *//p' "$out.$i") / 50000")"
		i=$((i + 1))
	done
}

# srv_ir VARIANT: callgrind Ir per request of node_srv.js, 2000 requests after 3000.
srv_ir() {
	out=$W/cgs.$1
	p=$(free_port)
	# shellcheck disable=SC2046
	env $(node_env "$1") valgrind --tool=callgrind --smc-check=all-non-file \
		--zero-before=uv_os_getpriority --dump-before=uv_os_gethostname --callgrind-out-file="$out" \
		"$NODE" --single-threaded "$HERE/node_srv.js" "$p" 3000 2000 >"$out.log" 2>"$out.err" &
	n=$!
	PIDS="$PIDS $n"
	i=0
	while ! listening "$p"; do
		i=$((i + 1))
		[ $i -gt 1200 ] || ! kill -0 "$n" 2>/dev/null && { stop "$n"; return 1; }
		sleep 0.05
	done
	"$NODE" "$HERE/node_client.js" "$p" 5010 8 || { stop "$n"; return 1; }
	stop "$n"
	[ -f "$out.1" ] || return 1
	calc "$(sed -n 's/^summary: *//p' "$out.1") / 2000"
}

row8_callgrind() {
	if ! have valgrind; then
		say "  callgrind counts skipped: valgrind missing (apt-get install -y valgrind)"
		return
	fi
	for v in plain empty adapter; do
		hops_ir $v >"$W/ir.$v" || { say "  callgrind failed ($v): $(tail -n 2 "$W/cgh.$v.err")"; return; }
	done
	for k in $HOP_KINDS; do
		x=$(awk -v k=$k '$1 == k { print $2 }' "$W/ir.plain")
		e=$(awk -v k=$k '$1 == k { print $2 }' "$W/ir.empty")
		y=$(awk -v k=$k '$1 == k { print $2 }' "$W/ir.adapter")
		say "  $k: $(fmt "$x" %.0f) Ir plain, $(fmt "$e" %.0f) with an empty init hook, $(fmt "$y" %.0f) with the adapter: $(fmt "$(calc "$y - $x")" %+.0f) Ir per hop, of which Node's hooks $(fmt "$(calc "$e - $x")" %+.0f)"
		row 8 "Node Ir per $k hop (callgrind)" "$(fmt "$x" %.0f) Ir" "$(fmt "$y" %.0f) Ir" \
			"$(fmt "$(calc "$y - $x")" %+.0f) Ir" "" info
	done
	cmd "HOPS_WARM=3 valgrind --tool=callgrind --smc-check=all-non-file --zero-before=uv_os_getpriority" \
		"--dump-before=uv_os_gethostname $NODE --single-threaded tools/bench/node_hops.js mark 50000   # [LD_PRELOAD=$LIB]"
	for v in plain lib adapter; do
		eval "srv_$v=\$(srv_ir $v)" || { say "  callgrind of the server failed ($v)"; return; }
	done
	say "  server, per request: $(fmt "$srv_plain" %.0f) Ir plain, $(fmt "$srv_lib" %.0f) with the library only, $(fmt "$srv_adapter" %.0f) with the adapter"
	cmd "valgrind --tool=callgrind --smc-check=all-non-file --zero-before=uv_os_getpriority --dump-before=uv_os_gethostname" \
		"$NODE --single-threaded tools/bench/node_srv.js PORT 3000 2000 & $NODE tools/bench/node_client.js PORT 5010 8"
	row 8 "Node server Ir/request: library only vs plain" "$(fmt "$srv_plain" %.0f)" "$(fmt "$srv_lib" %.0f)" \
		"$(fmt "$(calc "$srv_lib / $srv_plain")" %.3f)" "" info
	row 8 "Node server Ir/request: library+adapter vs plain" "$(fmt "$srv_plain" %.0f)" "$(fmt "$srv_adapter" %.0f)" \
		"$(fmt "$(calc "$srv_adapter / $srv_plain")" %.3f)" "" info
}

row8() {
	say "== 8. Node: a server logging 2 lines per request, and the cost per async hop ($NODE_ROUNDS rounds)"
	if ! [ -x "$NODE" ] || ! have wrk || ! [ -f "$B/reqctx-adapters/node/reqctx.node" ]; then
		say "  skipped: node, wrk or the Node adapter missing (apt-get install -y nodejs libnode-dev wrk; make)"
		return
	fi
	row8_throughput
	row8_hops
	[ "${BENCH_NODE_CALLGRIND:-1}" = 0 ] || row8_callgrind
}
