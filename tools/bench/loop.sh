# tools/bench/loop.sh: event-loop iterations per request, without the library,
# under it (REQCTX_LOOP=auto, the default) and under it in split mode
# (REQCTX_LOOP=split, one event per call: what every loop got before auto).
# Sourced by tools/bench/run.sh, whose helpers it uses and whose summary gets
# its rows ("loop"); BENCH_LOOP=0 skips it.
#
# Iterations are counted in the host: tools/bench/loopcount.c, preloaded in
# front of libreqctx.so (or alone), counts the epoll_wait/poll/select calls
# the server makes and the events they return; strace cannot, since split
# mode serves queued events without a system call. The asyncio servers also
# count BaseEventLoop._run_once themselves. Each run is one wrk load of
# BENCH_SECS seconds; per request = count / requests wrk completed.

LP_SRC=$(cd "$(dirname "$0")" && pwd)
LP_SHIM=$W/loopcount.so

# lp_wrk PORT CONNS: requests one wrk run completed.
lp_wrk() {
	wrk -t1 -c"$2" -d"${SECS}s" "http://127.0.0.1:$1/" 2>&1 | awk '/ requests in / { print $1 }'
}

# lp_env KIND: the LD_PRELOAD and REQCTX_LOOP for plain, auto or split.
lp_env() {
	case $1 in
	plain) echo "LD_PRELOAD=$LP_SHIM" ;;
	*) echo "LD_PRELOAD=$LP_SHIM:$LIB REQCTX_LOOP=$1" ;;
	esac
}

# lp_sum FILE: total calls and events of the processes that reported.
lp_sum() {
	awk '{ c += $2; e += $3 } END { printf "%d %d\n", c, e }' "$1"
}

# lp_nginx KIND: nginx (1 worker, the plain conf of row 3) under wrk -c32;
# prints "requests calls events".
lp_nginx() {
	d=$W/loop_ngx_$1
	mkdir -p "$d"
	chmod 755 "$d"
	port=$(free_port)
	nginx_conf "$d" "$port" plain
	: >"$d/counts"
	chmod 666 "$d/counts" # the worker runs as nobody
	env $(lp_env "$1") LOOPCOUNT_FILE="$d/counts" "$NGINX" -p "$d" -c "$d/nginx.conf" \
		-e "$d/error.log" </dev/null >"$d/out" 2>&1 &
	pid=$!
	PIDS="$PIDS $pid"
	wait_port "$port" "$pid" || { stop "$pid"; return 1; }
	n=$(lp_wrk "$port" 32)
	stop "$pid"
	echo "$n $(lp_sum "$d/counts")"
}

lp_asyncio_server() {
	cat <<'EOF'
# An asyncio HTTP/1.1 keep-alive server that logs 2 lines per request and
# counts its loop's iterations (BaseEventLoop._run_once) itself.
#   server.py protocol|streams PORT COUNTFILE
import asyncio, asyncio.base_events, signal, sys

runs = 0
_run_once = asyncio.base_events.BaseEventLoop._run_once

def counted(self):
    global runs
    runs += 1
    return _run_once(self)

asyncio.base_events.BaseEventLoop._run_once = counted
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"

class Http(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""

    def data_received(self, data):
        self.buf += data
        while (i := self.buf.find(b"\r\n\r\n")) >= 0:
            line = self.buf[:i].split(b"\r\n", 1)[0].decode("latin-1")
            self.buf = self.buf[i + 4:]
            sys.stderr.write("handling %s\n" % line)
            self.t.write(RESP)
            sys.stderr.write("handled %s\n" % line)

async def streams(r, w):
    try:
        while True:
            line = (await r.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0].decode("latin-1")
            sys.stderr.write("handling %s\n" % line)
            w.write(RESP)
            await w.drain()
            sys.stderr.write("handled %s\n" % line)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    w.close()

async def main(kind, port, out):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, done.set_result, None)
    if kind == "protocol":
        srv = await loop.create_server(Http, "127.0.0.1", port)
    else:
        srv = await asyncio.start_server(streams, "127.0.0.1", port)
    await done
    srv.close()
    with open(out, "w") as f:
        f.write("%d\n" % runs)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
EOF
}

# lp_asyncio STYLE KIND: the asyncio server under wrk -c16; prints
# "requests calls events runs".
lp_asyncio() {
	d=$W/loop_py_$1_$2
	mkdir -p "$d"
	port=$(free_port)
	: >"$d/counts"
	env $(lp_env "$2") LOOPCOUNT_FILE="$d/counts" "$PYTHON" "$W/loop_server.py" "$1" "$port" \
		"$d/runs" </dev/null >"$d/out" 2>"$d/err.log" &
	pid=$!
	PIDS="$PIDS $pid"
	wait_port "$port" "$pid" || { stop "$pid"; return 1; }
	n=$(lp_wrk "$port" 16)
	stop "$pid"
	echo "$n $(lp_sum "$d/counts") $(cat "$d/runs" 2>/dev/null || echo 0)"
}

# lp_report WHAT PLAIN AUTO SPLIT, each "requests calls events": prints the
# three per-request figures and adds the rows.
lp_report() {
	what=$1
	shift
	pa=$(calc "$2 / $1"); pe=$(calc "$3 / $2")
	aa=$(calc "$5 / $4"); ae=$(calc "$6 / $5")
	sa=$(calc "$8 / $7"); se=$(calc "$9 / $8")
	say "  $what per request: plain $(fmt "$pa" %.3f), auto $(fmt "$aa" %.3f), split $(fmt "$sa" %.3f)" \
		"(events per call $(fmt "$pe" %.2f), $(fmt "$ae" %.2f), $(fmt "$se" %.2f); requests $1, $4, $7)"
	r=$(calc "$aa / $pa")
	row loop "$what / request" "$(fmt "$pa" %.3f)" "$(fmt "$aa" %.3f)" "$(fmt "$r" %.3f)" "~1.00" \
		"$(awk -v x="$r" 'BEGIN { print (x <= 1.05) ? "met" : "MISSED" }')"
	row loop "$what / request, REQCTX_LOOP=split" "$(fmt "$pa" %.3f)" "$(fmt "$sa" %.3f)" \
		"$(fmt "$(calc "$sa / $pa")" %.3f)" "" info
}

loop_main() {
	say "== loop. event-loop iterations per request, ${SECS} s of wrk -t1 each: plain, REQCTX_LOOP=auto, REQCTX_LOOP=split"
	if ! have wrk || ! have cc; then
		say "  skipped: wrk or cc missing (apt-get install -y wrk gcc)"
		return
	fi
	if ! cc -shared -fPIC -O2 -o "$LP_SHIM" "$LP_SRC/loopcount.c" -ldl; then
		say "  skipped: the counting shim does not build"
		return
	fi
	cmd "cc -shared -fPIC -O2 -o $LP_SHIM $LP_SRC/loopcount.c -ldl"
	if [ -x "$NGINX" ]; then
		say " nginx, 1 worker, return 200, access log on, wrk -c32:"
		a=$(lp_nginx plain) && b=$(lp_nginx auto) && c=$(lp_nginx split) &&
			lp_report "nginx epoll_wait calls" $a $b $c
		cmd "LD_PRELOAD=$LP_SHIM[:$LIB] [REQCTX_LOOP=split] LOOPCOUNT_FILE=counts $NGINX -p DIR -c DIR/nginx.conf   # row 3's conf"
		cmd "wrk -t1 -c32 -d${SECS}s http://127.0.0.1:PORT/; kill -TERM MASTER; cat counts   # pid calls events"
	else
		say "  nginx: skipped (apt-get install -y nginx-light)"
	fi
	if [ -x "$PYTHON" ]; then
		lp_asyncio_server >"$W/loop_server.py"
		for style in protocol streams; do
			say " asyncio ($style), 2 log lines per request, wrk -c16:"
			a=$(lp_asyncio $style plain) && b=$(lp_asyncio $style auto) &&
				c=$(lp_asyncio $style split) || continue
			# "requests calls events runs" -> per-iteration and per-call triples
			runs=$(for x in "$a" "$b" "$c"; do set -- $x; printf '%s %s %s ' $1 $4 $3; done)
			calls=$(for x in "$a" "$b" "$c"; do set -- $x; printf '%s %s %s ' $1 $2 $3; done)
			lp_report "asyncio $style _run_once" $runs
			lp_report "asyncio $style epoll_wait calls" $calls
		done
		cmd "LD_PRELOAD=$LP_SHIM[:$LIB] [REQCTX_LOOP=split] LOOPCOUNT_FILE=counts $PYTHON $W/loop_server.py protocol|streams PORT runs 2>err.log"
		cmd "wrk -t1 -c16 -d${SECS}s http://127.0.0.1:PORT/; kill -TERM PID; cat runs counts"
	else
		say "  asyncio: skipped (python3 missing)"
	fi
	cleanup_servers
}

[ "${BENCH_LOOP:-1}" = 0 ] || loop_main
