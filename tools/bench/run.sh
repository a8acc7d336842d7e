#!/bin/sh
# make bench: what libreqctx.so costs, measured beside the alternative in the
# same run and printed as ratios. Every row prints the command that
# reproduces it. Nothing here is a test: no figure fails the run.
#
# Environment (defaults in brackets):
#   B              build directory, absolute [build]
#   BENCH_ROWS     rows to run [1 2 3 4 5 6 7 8 9]
#   BENCH_N        calls per callgrind/strace run [100000]
#   BENCH_ROUNDS   alternating rounds for throughput and timing rows [5]
#   BENCH_SECS     seconds per wrk run [3]
#   BENCH_CONNS    idle keep-alive connections for the memory row [10000]
#   BENCH_LOG_MB   size of the generated log for row 7 [1024]
set -u

B=${B:-$PWD/build}
ROWS=${BENCH_ROWS:-1 2 3 4 5 6 7 8 9 10}
N=${BENCH_N:-100000}
ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECS:-3}
CONNS=${BENCH_CONNS:-10000}
LOG_MB=${BENCH_LOG_MB:-1024}
LIB=$B/libreqctx.so
BIN=$B/bench
W=$B/bench/run
NGINX=/usr/sbin/nginx
PYTHON=/usr/bin/python3
TABLE=$W/table
PIDS=""

unset LD_PRELOAD
for v in $(env | sed -n 's/^\(REQCTX_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

rm -rf "$W"
mkdir -p "$W"
chmod 755 "$W"
: >"$TABLE"

# ---- helpers -----------------------------------------------------------------

say() { printf '%s\n' "$*"; }
cmd() { printf '  $ %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# row ROW WHAT WITHOUT WITH RESULT TARGET VERDICT: one line of the final table.
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TABLE"; }

# calc EXPR: awk arithmetic.
calc() { awk "BEGIN { printf \"%s\", $1 }" 2>/dev/null; }
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

now_ns() { date +%s%N; }

cleanup() {
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	PIDS=""
	rm -f "$W/big.log" "$W/out.reqctx" "$W/out.grep"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() {
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	PIDS=$(printf '%s\n' $PIDS | grep -vx "$1" | tr '\n' ' ')
}

free_port() {
	if [ -x "$PYTHON" ]; then
		"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	else
		echo $((20000 + ($$ * 7 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 20000))
	fi
}

# listening PORT: 0 once something listens on 127.0.0.1:PORT.
listening() {
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}

wait_port() {
	i=0
	while ! listening "$1"; do
		i=$((i + 1))
		[ $i -gt 200 ] && return 1
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 0
}

. "$(dirname "$0")/nginx.sh" # nginx on free ports, certificates, alternating rounds

# ---- row 1: instructions per call -------------------------------------------

# ir MODE PRELOAD: callgrind's Ir inside loop() for N calls.
ir() {
	out=$W/cg.$1.$2
	if [ "$2" = with ]; then
		REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB valgrind --tool=callgrind --toggle-collect=loop --log-file="$out.vg" \
			--callgrind-out-file="$out" "$BIN/bench_calls" "$1" "$N" 2>"$out.err" >/dev/null
	else
		valgrind --tool=callgrind --toggle-collect=loop --log-file="$out.vg" \
			--callgrind-out-file="$out" "$BIN/bench_calls" "$1" "$N" 2>"$out.err" >/dev/null
	fi
	[ -f "$out" ] || return 1
	if [ "$2" = with ] && ! grep -q libreqctx.so "$out"; then
		say "  (libreqctx.so was not loaded under valgrind)" >&2
		return 1
	fi
	sed -n 's/^summary: *//p' "$out"
}

row1() {
	say "== 1. user-space instructions added per call (callgrind, $N calls, loop only)"
	if ! have valgrind; then
		say "  skipped: valgrind missing (apt-get install -y valgrind)"
		return
	fi
	cd "$W" || return
	for m in devnull socketpair stderr printf mutex mutexq; do
		rm -f x.log
		a=$(ir $m without) || { say "  $m: callgrind failed"; continue; }
		rm -f x.log
		b=$(ir $m with) || { say "  $m: callgrind failed"; continue; }
		calls=$N
		[ $m = socketpair ] && calls=$((2 * N))
		d=$(calc "($b - $a) / $calls")
		case $m in
		devnull) what="write 64 B to /dev/null"; target=30 ;;
		socketpair) what="socketpair write+read (per call)"; target=40 ;;
		stderr) what="80-byte line, write(2) to stderr"; target=250 ;;
		printf) what="80-byte fprintf to x.log (info)"; target="" ;;
		mutex) what="mutex lock+unlock, no job queue (info)"; target="" ;;
		mutexq) what="mutex lock+unlock, a job queue exists (info)"; target="" ;;
		esac
		if [ $m = stderr ] && ! head -c 5 cg.stderr.with.err | grep -q '^\[req:'; then
			say "  warning: the stderr lines carry no prefix: the library was not active"
		fi
		base=$(calc "$a / $calls")
		with=$(calc "$b / $calls")
		say "  $what: $(fmt "$base" %.1f) -> $(fmt "$with" %.1f) Ir/call, added $(fmt "$d" %.1f)"
		cmd "cd $W && [LD_PRELOAD=$LIB] valgrind --tool=callgrind --toggle-collect=loop" \
			"--callgrind-out-file=cg.out $BIN/bench_calls $m $N 2>x.err; grep summary cg.out"
		verdict=info
		[ -n "$target" ] && verdict=$(awk -v d="$d" -v t="$target" \
			'BEGIN { print (d <= t) ? "met" : "MISSED" }')
		row 1 "$what" "$(fmt "$base" %.1f) Ir" "$(fmt "$with" %.1f) Ir" \
			"+$(fmt "$d" %.1f) Ir/call" "${target:+<= $target}" "$verdict"
	done
	cd - >/dev/null
}

# ---- row 2: syscalls per log write -------------------------------------------

# sc MODE PRELOAD PATTERN: syscalls matching PATTERN for 1000 calls.
sc() {
	out=$W/st.$1.$2
	rm -f "$W/x.log"
	if [ "$2" = with ]; then
		(cd "$W" && REQCTX_LOG_FDS=1,2 LD_PRELOAD=$LIB strace -f -qq -y -e trace=write,writev -o "$out" \
			"$BIN/bench_calls" "$1" 1000 2>"$out.err" >/dev/null)
	else
		(cd "$W" && strace -f -qq -y -e trace=write,writev -o "$out" \
			"$BIN/bench_calls" "$1" 1000 2>"$out.err" >/dev/null)
	fi
	grep -cE "$3" "$out"
}

row2() {
	say "== 2. syscalls per log write (strace, 1000 lines)"
	if ! have strace; then
		say "  skipped: strace missing (apt-get install -y strace)"
		return
	fi
	a=$(sc stderr without '(write|writev)\(2<')
	b=$(sc stderr with '(write|writev)\(2<')
	kinds=$(sed -n 's/^[0-9]* *\(writev*\)(2<.*/\1/p' "$W/st.stderr.with" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
	say "  write(2) of a line to stderr: $(calc "$a / 1000") -> $(calc "$b / 1000") syscalls per line ($kinds)"
	cmd "cd $W && [LD_PRELOAD=$LIB] strace -f -qq -y -e trace=write,writev -o st.txt" \
		"$BIN/bench_calls stderr 1000 2>x.err; grep -cE '(write|writev)\\(2<' st.txt"
	row 2 "syscalls per stderr line" "$(calc "$a / 1000")" "$(calc "$b / 1000")" \
		"$(calc "$b / $a")x" "same" "$([ "$a" = "$b" ] && echo met || echo MISSED)"
	a=$(sc printf without 'x\.log>')
	b=$(sc printf with 'x\.log>')
	say "  fprintf to x.log, 1000 lines: $a -> $b syscalls"
	cmd "cd $W && [LD_PRELOAD=$LIB] strace -f -qq -y -e trace=write,writev -o st.txt" \
		"$BIN/bench_calls printf 1000; grep -c 'x.log>' st.txt"
	row 2 "syscalls per 1000 fprintf lines" "$a" "$b" "$(calc "$b / $a")x" "same" \
		"$([ "$a" = "$b" ] && echo met || echo "info")"
}

# ---- row 3: nginx under wrk --------------------------------------------------

# nginx_conf DIR PORT KIND: KIND is plain or native ($request_id in the log
# and in an X-Request-Id header).
nginx_conf() {
	fmt=combined
	hdr=""
	if [ "$3" = native ]; then
		fmt=rid
		hdr='add_header X-Request-Id $request_id;'
	fi
	mkdir -p "$1/tmp"
	cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
lock_file $1/nginx.lock;
error_log $1/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  default_type text/plain;
  log_format rid '[req:\$request_id] \$remote_addr - \$remote_user [\$time_local] '
                 '"\$request" \$status \$body_bytes_sent "\$http_referer" "\$http_user_agent"';
  access_log $1/access.log $fmt;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$2;
    location / { $hdr return 200 "ok\n"; }
  }
}
EOF
}

# nginx_start NAME KIND PRELOAD: starts nginx in $W/NAME; sets port and pid.
nginx_start() { ngx_start "$1" "$3" 1 nginx_conf "$2"; }

# rps PORT PATH CONNS: requests per second of one wrk run.
rps() {
	wrk -t1 -c"$3" -d"${SECS}s" "http://127.0.0.1:$1$2" 2>&1 | awk '/^Requests\/sec:/ { print $2 }'
}

row3() {
	say "== 3. nginx, 1 worker, wrk -t1 -c32, ${ROUNDS} alternating rounds of ${SECS} s"
	if ! [ -x "$NGINX" ] || ! have wrk; then
		say "  skipped: nginx or wrk missing (apt-get install -y nginx-light wrk)"
		return
	fi
	nginx_start ngx_plain plain without || return
	pa=$port
	nginx_start ngx_native native without || return
	pb=$port
	nginx_start ngx_pre plain with || return
	pc=$port
	: >"$W/rps.plain"; : >"$W/rps.native"; : >"$W/rps.pre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		rps "$pa" / 32 >>"$W/rps.plain"
		rps "$pb" / 32 >>"$W/rps.native"
		rps "$pc" / 32 >>"$W/rps.pre"
		r=$((r + 1))
	done
	a=$(median <"$W/rps.plain")
	b=$(median <"$W/rps.native")
	c=$(median <"$W/rps.pre")
	say "  plain:   $(tr '\n' ' ' <"$W/rps.plain")-> median $a req/s"
	say "  native:  $(tr '\n' ' ' <"$W/rps.native")-> median $b req/s"
	say "  preload: $(tr '\n' ' ' <"$W/rps.pre")-> median $c req/s"
	if ! grep -q '^\[req:' "$W/ngx_pre/access.log" || ! grep -q '^\[req:' "$W/ngx_native/access.log"; then
		say "  warning: an access log lacks the [req:...] lines"
	fi
	cmd "$NGINX -p DIR -c DIR/nginx.conf   # DIR=$W/ngx_plain, ngx_native; the conf is tools/bench/run.sh nginx_conf"
	cmd "LD_PRELOAD=$LIB $NGINX -p DIR -c DIR/nginx.conf   # DIR=$W/ngx_pre (the plain conf)"
	cmd "wrk -t1 -c32 -d${SECS}s http://127.0.0.1:PORT/   # A B C A B C ..., $ROUNDS rounds"
	pn=$(calc "$c / $b")
	pp=$(calc "$c / $a")
	say "  preload/native $(fmt "$pn" %.3f), preload/plain $(fmt "$pp" %.3f), native/plain $(fmt "$(calc "$b / $a")" %.3f)"
	row 3 "nginx req/s: preload vs native \$request_id" "$b" "$c" "$(fmt "$pn" %.3f)" ">= 0.97" \
		"$(awk -v x="$pn" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
	row 3 "nginx req/s: preload vs plain" "$a" "$c" "$(fmt "$pp" %.3f)" "" info
	cleanup_servers
}

cleanup_servers() {
	for p in $PIDS; do
		stop "$p"
	done
}

# ---- row 4: python3 -m http.server ---------------------------------------------

py_start() {
	d=$W/$1
	mkdir -p "$d/www"
	printf 'ok\n' >"$d/www/ok.txt"
	port=$(free_port)
	if [ "$2" = with ]; then
		(cd "$d/www" && LD_PRELOAD=$LIB exec "$PYTHON" -m http.server "$port" --bind 127.0.0.1 \
			</dev/null >"$d/out" 2>"$d/err") &
	else
		(cd "$d/www" && exec "$PYTHON" -m http.server "$port" --bind 127.0.0.1 \
			</dev/null >"$d/out" 2>"$d/err") &
	fi
	pid=$!
	PIDS="$PIDS $pid"
	wait_port "$port" "$pid" || { say "  python did not start: $(tail -n 3 "$d/err")"; return 1; }
}

row4() {
	say "== 4. python3 -m http.server, wrk -t1 -c4, ${ROUNDS} alternating rounds of ${SECS} s"
	if ! [ -x "$PYTHON" ] || ! have wrk; then
		say "  skipped: python3 or wrk missing (apt-get install -y python3 wrk)"
		return
	fi
	py_start py_plain without || return
	pa=$port
	py_start py_pre with || return
	pc=$port
	: >"$W/rps.py"; : >"$W/rps.pypre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		rps "$pa" /ok.txt 4 >>"$W/rps.py"
		rps "$pc" /ok.txt 4 >>"$W/rps.pypre"
		r=$((r + 1))
	done
	a=$(median <"$W/rps.py")
	c=$(median <"$W/rps.pypre")
	say "  plain:   $(tr '\n' ' ' <"$W/rps.py")-> median $a req/s"
	say "  preload: $(tr '\n' ' ' <"$W/rps.pypre")-> median $c req/s"
	grep -q '^\[req:' "$W/py_pre/err" || say "  warning: python's log lacks the [req:...] lines"
	cmd "cd DIR && [LD_PRELOAD=$LIB] $PYTHON -m http.server PORT --bind 127.0.0.1 2>err"
	cmd "wrk -t1 -c4 -d${SECS}s http://127.0.0.1:PORT/ok.txt   # A B A B ..., $ROUNDS rounds"
	pp=$(calc "$c / $a")
	say "  preload/plain $(fmt "$pp" %.3f)"
	row 4 "python http.server req/s" "$a" "$c" "$(fmt "$pp" %.3f)" "" info
	cleanup_servers
}

# ---- row 5: ID generation -------------------------------------------------------

row5() {
	say "== 5. ID generation (src/id.c linked directly)"
	out=$("$BIN/bench_idgen" 10000000 1)
	r1=$(printf '%s\n' "$out" | awk '/^ids_per_sec/ { print $2 }')
	out=$("$BIN/bench_idgen" 10000000 "$(nproc)")
	rn=$(printf '%s\n' "$out" | awk '/^ids_per_sec/ { print $2 }')
	say "  1 thread: $(fmt "$r1" %.0f) IDs/s; $(nproc) threads: $(fmt "$rn" %.0f) IDs/s per thread"
	cmd "$BIN/bench_idgen 10000000 1"
	row 5 "UUIDv4 IDs per second, 1 thread" "" "$(fmt "$r1" %.0f)" "$(fmt "$(calc "1e9 / $r1")" %.1f) ns/ID" "" info
	if have strace; then
		strace -f -qq -e trace=getrandom -o "$W/gr.1" "$BIN/bench_idgen" 1 1 >/dev/null
		strace -f -qq -e trace=getrandom -o "$W/gr.M" "$BIN/bench_idgen" 1000000 1 >/dev/null
		a=$(grep -c getrandom "$W/gr.1")
		b=$(grep -c getrandom "$W/gr.M")
		say "  getrandom calls: $a for 1 ID, $b for 1000000 IDs (the per-thread seed and libc's own)"
		cmd "strace -f -e trace=getrandom $BIN/bench_idgen 1000000 1 2>&1 | grep -c getrandom"
		row 5 "syscalls per ID (1M IDs)" "" "$(calc "($b - $a) / 1000000")" "$b getrandom in all" "0" \
			"$([ "$a" = "$b" ] && echo met || echo MISSED)"
	fi
}

# ---- row 6: memory per idle keep-alive connection ----------------------------

row6() {
	say "== 6. RSS with $CONNS idle keep-alive connections (nginx, 1 worker)"
	if ! [ -x "$NGINX" ]; then
		say "  skipped: nginx missing (apt-get install -y nginx-light)"
		return
	fi
	for k in without with; do
		nginx_start "mem_$k" plain $k || return
		sleep 0.3
		worker=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{ print $1 }')
		if [ -z "$worker" ]; then
			say "  no nginx worker found"
			return
		fi
		"$BIN/bench_conns" "$port" "$CONNS" "$worker" >"$W/mem.$k" || {
			say "  bench_conns failed"
			return
		}
		cleanup_servers
	done
	a0=$(awk '/before/ { print $2 }' "$W/mem.without"); a1=$(awk '/after/ { print $2 }' "$W/mem.without")
	b0=$(awk '/before/ { print $2 }' "$W/mem.with"); b1=$(awk '/after/ { print $2 }' "$W/mem.with")
	pa=$(calc "($a1 - $a0) * 1024 / $CONNS")
	pb=$(calc "($b1 - $b0) * 1024 / $CONNS")
	say "  without: worker VmRSS $a0 -> $a1 kB ($(fmt "$pa" %.0f) B/conn)"
	say "  with:    worker VmRSS $b0 -> $b1 kB ($(fmt "$pb" %.0f) B/conn)"
	say "  added by the library: $(fmt "$(calc "$pb - $pa")" %.0f) bytes per connection"
	cmd "$BIN/bench_conns PORT $CONNS WORKER_PID   # against $NGINX -p $W/mem_without (then mem_with, under LD_PRELOAD)"
	row 6 "worker RSS bytes per idle conn" "$(fmt "$pa" %.0f)" "$(fmt "$pb" %.0f)" \
		"+$(fmt "$(calc "$pb - $pa")" %.0f) B/conn" "" info
}

# ---- row 7: reqctx logs --id against grep -F ----------------------------------

row7() {
	id=4bf92f35-77b3-4da6-a3ce-929d0e0e4736
	say "== 7. reqctx logs --id against grep -F, ${LOG_MB} MB log, $ROUNDS alternating rounds (warm cache)"
	"$BIN/bench_genlog" "$W/big.log" "$LOG_MB" "$id" >"$W/genlog" || {
		say "  could not write the log"
		return
	}
	cat "$W/big.log" >/dev/null
	: >"$W/t.reqctx"; : >"$W/t.grep"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		t0=$(now_ns)
		"$B/reqctx" logs --id "$id" "$W/big.log" >"$W/out.reqctx"
		t1=$(now_ns)
		LC_ALL=C grep -F "[req:$id] " "$W/big.log" >"$W/out.grep"
		t2=$(now_ns)
		echo $((t1 - t0)) >>"$W/t.reqctx"
		echo $((t2 - t1)) >>"$W/t.grep"
		r=$((r + 1))
	done
	a=$(median <"$W/t.grep")
	b=$(median <"$W/t.reqctx")
	if ! cmp -s "$W/out.reqctx" "$W/out.grep"; then
		say "  warning: reqctx and grep printed different lines"
	fi
	ratio=$(calc "$a / $b")
	say "  $(awk '/^lines/ { print $2 }' "$W/genlog") lines, $(wc -l <"$W/out.grep") of them the ID's"
	say "  grep -F: median $(fmt "$(calc "$a / 1e9")" %.3f) s; reqctx logs --id: median $(fmt "$(calc "$b / 1e9")" %.3f) s"
	cmd "$BIN/bench_genlog big.log $LOG_MB $id"
	cmd "time $B/reqctx logs --id $id big.log >out1; time LC_ALL=C grep -F '[req:$id] ' big.log >out2"
	row 7 "grep -F time / reqctx logs --id time" "$(fmt "$(calc "$a / 1e9")" %.3f) s" \
		"$(fmt "$(calc "$b / 1e9")" %.3f) s" "$(fmt "$ratio" %.2f)" ">= 1.0" \
		"$(awk -v x="$ratio" 'BEGIN { print (x >= 1.0) ? "met" : "MISSED" }')"
	rm -f "$W/big.log" "$W/out.reqctx" "$W/out.grep"
}

# ---- main ------------------------------------------------------------------------

say "reqctx bench: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)"
say "library: $LIB ($(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?'))"
for r in $ROWS; do
	case $r in
	1) row1 ;;
	2) row2 ;;
	3) row3 ;;
	4) row4 ;;
	5) row5 ;;
	6) row6 ;;
	7) row7 ;;
	8) . "$(dirname "$0")/node.sh" && row8 ;;
	9) . "$(dirname "$0")/h2.sh" && row9 ;;
	10) . "$(dirname "$0")/python.sh" && row10 ;;
	11) ;; # tools/bench/ngxcost.sh, sourced below
	*) say "unknown row $r" ;;
	esac
done
. "$(dirname "$0")/loop.sh" # event-loop iterations per request (rows "loop"; BENCH_LOOP=0 skips)

. "$(dirname "$0")/correlate.sh" # batched log correlation (rows "corr"; BENCH_ROWS unset, or with corr)
. "$(dirname "$0")/lines.sh" # multi-line writes: syscalls and time (rows "lines"; BENCH_LINES=0 skips)
. "$(dirname "$0")/ngxcost.sh" # row 11: nginx instructions per request, and where they go (BENCH_ROWS unset, or with 11)
. "$(dirname "$0")/formats.sh" # per-line cost in each REQCTX_FORMAT (rows "formats"; BENCH_FORMATS=0 skips)
. "$(dirname "$0")/tls.sh" # nginx HTTPS req/s, preload / plain (row "tls"; BENCH_TLS=0 skips)
. "$(dirname "$0")/h2srv.sh" # nginx h2c and h2 req/s, preload / plain (rows "h2c", "h2"; BENCH_H2=0 skips)

say ""
say "== summary (without = the alternative; with = under libreqctx.so)"
awk -F '\t' 'BEGIN { printf "%-3s %-42s %16s %16s %18s %8s %s\n", "row", "measure", "without", "with", "result", "target", "" }
	{ printf "%-3s %-42s %16s %16s %18s %8s %s\n", $1, $2, $3, $4, $5, $6, $7 }' "$TABLE"
