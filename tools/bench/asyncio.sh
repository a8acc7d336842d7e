# tools/bench/asyncio.sh, row 10 of make bench: an aiohttp server (Debian's
# python3-aiohttp, on Debian's /usr/bin/python3) that logs 2 lines per
# request, plain and under the library, side by side: wrk -t1 -c16,
# BENCH_ROUNDS alternating rounds of BENCH_SECS seconds, medians. Sourced by
# tools/bench/run.sh (its helpers and variables); BENCH_ROWS without 10 skips
# it. The row says whether the library's Python adapter was in the build
# (it follows callbacks through asyncio's scheduler; without it a line logged
# after an await carries the ID the last socket read set).

AIO_PY=$W/aiohttp_srv.py

aio_server() {
	cat <<'EOF'
# aiohttp, one handler that logs a line, awaits, and logs another (stderr,
# through logging), as the Node row's server does. usage: srv.py PORT
import asyncio, logging, sys
from aiohttp import web

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
log = logging.getLogger("app")

async def handle(request):
    log.info("in %s", request.path)
    await asyncio.sleep(0)
    log.info("done %s", request.path)
    return web.Response(text="ok\n")

app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
EOF
}

# aio_start NAME PRELOAD: starts the server; sets port and pid.
aio_start() {
	port=$(free_port)
	env ${2:+LD_PRELOAD=$LIB REQCTX_LOG_FDS=1,2} "$PYTHON" "$AIO_PY" "$port" \
		</dev/null >"$W/$1.out" 2>"$W/$1.log" &
	pid=$!
	PIDS="$PIDS $pid"
	wait_port "$port" "$pid"
}

row10() {
	say "== 10. aiohttp, 2 log lines per request, wrk -t1 -c16, ${ROUNDS} alternating rounds of ${SECS} s"
	if ! [ -x "$PYTHON" ] || ! have wrk || ! "$PYTHON" -c 'import aiohttp' 2>/dev/null; then
		say "  skipped: python3, aiohttp or wrk missing (apt-get install -y python3-aiohttp wrk)"
		return
	fi
	if [ -d "$B/reqctx-adapters/python" ]; then
		adapter="with the Python adapter"
	else
		adapter="without a Python adapter (none in this build)"
	fi
	aio_server >"$AIO_PY"
	aio_start aio_plain "" || { say "  the plain server did not start: $(tail -n 3 "$W/aio_plain.log")"; return; }
	pa=$port; na=$pid
	aio_start aio_pre with || { say "  the preloaded server did not start: $(tail -n 3 "$W/aio_pre.log")"; stop "$na"; return; }
	pb=$port; nb=$pid
	: >"$W/aio.plain"; : >"$W/aio.pre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		rps "$pa" /x 16 >>"$W/aio.plain"
		rps "$pb" /x 16 >>"$W/aio.pre"
		r=$((r + 1))
	done
	stop "$na"; stop "$nb"
	a=$(median <"$W/aio.plain")
	b=$(median <"$W/aio.pre")
	say "  plain:   $(tr '\n' ' ' <"$W/aio.plain")-> median $a req/s"
	say "  preload: $(tr '\n' ' ' <"$W/aio.pre")-> median $b req/s ($adapter)"
	grep -q '^\[req:[^]]*\] in /x' "$W/aio_pre.log" || say "  warning: the preloaded server's log has no [req:...] lines"
	cmd "$PYTHON $AIO_PY PORT 2>log; REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB $PYTHON $AIO_PY PORT2 2>log2"
	cmd "wrk -t1 -c16 -d${SECS}s http://127.0.0.1:PORT/x   # A B A B ..., $ROUNDS rounds"
	ratio=$(calc "$b / $a")
	say "  preload/plain $(fmt "$ratio" %.3f)"
	row 10 "aiohttp req/s, 2 log lines ($( [ -d "$B/reqctx-adapters/python" ] && echo adapter || echo no adapter))" \
		"$a" "$b" "$(fmt "$ratio" %.3f)" ">= 0.97" \
		"$(awk -v x="$ratio" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
}

case " ${BENCH_ROWS:-10} " in
*" 10 "*) row10 ;;
esac
