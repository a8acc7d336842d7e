# make bench, row 8: the Node adapter. Sourced by tools/bench/run.sh (uses its
# helpers and variables). Two measures, each side by side in one run:
#   - throughput of a Node server logging 2 lines per request (node_srv.js),
#     plain vs under the library with its adapter (wrk -t1 -c32, alternating);
#   - the adapter's added cost per async hop: node_hops.js plain vs preloaded,
#     ns per await, setImmediate and process.nextTick hop.
NODE=${NODE:-/usr/bin/node}
HERE=$(dirname "$0")

row8() {
	say "== 8. Node: a server logging 2 lines per request, and the cost per async hop"
	if ! [ -x "$NODE" ] || ! have wrk || ! [ -f "$B/reqctx-adapters/node/reqctx.node" ]; then
		say "  skipped: node, wrk or the Node adapter missing (apt-get install -y nodejs libnode-dev wrk; make)"
		return
	fi
	pa=$(free_port)
	"$NODE" "$HERE/node_srv.js" "$pa" >"$W/node_plain.log" 2>&1 &
	na=$!
	PIDS="$PIDS $na"
	pb=$(free_port)
	REQCTX_LOG_FDS=1,2 LD_PRELOAD="$LIB" "$NODE" "$HERE/node_srv.js" "$pb" >"$W/node_pre.log" 2>&1 &
	nb=$!
	PIDS="$PIDS $nb"
	if ! wait_port "$pa" "$na" || ! wait_port "$pb" "$nb"; then
		say "  skipped: a Node server did not start"
		stop "$na"; stop "$nb"
		return
	fi
	: >"$W/node.plain"; : >"$W/node.pre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		rps "$pa" /x 32 >>"$W/node.plain"
		rps "$pb" /x 32 >>"$W/node.pre"
		r=$((r + 1))
	done
	stop "$na"; stop "$nb"
	a=$(median <"$W/node.plain")
	b=$(median <"$W/node.pre")
	say "  plain:   $(tr '\n' ' ' <"$W/node.plain")-> median $a req/s"
	say "  preload: $(tr '\n' ' ' <"$W/node.pre")-> median $b req/s"
	grep -q '^\[req:' "$W/node_pre.log" || say "  warning: the preloaded server's log has no [req:...] lines"
	cmd "$NODE tools/bench/node_srv.js PORT >log; REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB $NODE tools/bench/node_srv.js PORT2 >log2"
	cmd "wrk -t1 -c32 -d${SECS}s http://127.0.0.1:PORT/x   # A B A B ..., $ROUNDS rounds"
	ratio=$(calc "$b / $a")
	row 8 "Node req/s, 2 log lines: preload+adapter vs plain" "$a" "$b" "$(fmt "$ratio" %.3f)" ">= 0.97" \
		"$(awk -v x="$ratio" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"

	: >"$W/hops.plain"; : >"$W/hops.pre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		"$NODE" "$HERE/node_hops.js" 1000000 3 >>"$W/hops.plain"
		REQCTX_LOG_FDS=9 LD_PRELOAD="$LIB" "$NODE" "$HERE/node_hops.js" 1000000 3 >>"$W/hops.pre"
		r=$((r + 1))
	done
	for k in await immediate nexttick; do
		x=$(awk -v k=$k '$1 == k { print $2 }' "$W/hops.plain" | median)
		y=$(awk -v k=$k '$1 == k { print $2 }' "$W/hops.pre" | median)
		d=$(calc "$y - $x")
		say "  $k: plain median $x ns, with the adapter $y ns: +$(fmt "$d" %.1f) ns per hop"
		row 8 "Node ns per $k hop: adapter's added cost" "$x ns" "$y ns" "+$(fmt "$d" %.1f) ns" "<= 100" \
			"$(awk -v x="$d" 'BEGIN { print (x <= 100) ? "met" : "MISSED" }')"
	done
	cmd "$NODE tools/bench/node_hops.js 1000000 3; REQCTX_LOG_FDS=9 LD_PRELOAD=$LIB $NODE tools/bench/node_hops.js 1000000 3"
}
