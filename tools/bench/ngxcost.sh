# tools/bench/ngxcost.sh, row 11 of make bench: user-space instructions per
# request that the library adds to nginx, and where they go. Sourced by
# tools/bench/run.sh (its helpers and variables); BENCH_ROWS without 11 skips it.
#
# nginx runs as one process (master_process off: the process that serves is
# the one valgrind follows) with row 3's conf: return 200, the access log on.
# A client outside valgrind (bench_reqs) sends a few requests to warm up; then
# callgrind's counters are zeroed (callgrind_control -z), exactly
# BENCH_NGX_REQS requests go over keep-alive connections, one outstanding on
# each, and the counters are dumped (callgrind_control -d): the dump holds
# those requests and nothing else. Per request = dump total / requests;
# added = with - without. Over 1 connection every request is its own loop
# iteration (epoll_wait, recv, writev, the log write); over 32 an
# epoll_wait returns many events. The same for nginx's own $request_id in
# the log and an X-Request-Id header (the native conf), for comparison.
#
# The breakdown sums the library's own instructions by source file (an
# inlined function counts where its code is), plus the libc functions the
# library calls (what is left of the difference): exact, and it adds up.

NC_REQS=${BENCH_NGX_REQS:-2000}

# nc_stop PID: TERM, again after 20 s (valgrind once sat in epoll_wait past the
# first), KILL after 30: the dump is written by then.
nc_stop() {
	kill -TERM "$1" 2>/dev/null
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 300 ]; do
		i=$((i + 1))
		[ $i = 200 ] && kill -TERM "$1" 2>/dev/null
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	stop "$1"
}

# nc_run NAME KIND PRELOAD CONNS: one callgrind run; prints the dump's total Ir.
nc_run() {
	d=$W/ngxcost_$1
	rm -rf "$d"
	mkdir -p "$d"
	chmod 755 "$d"
	port=$(free_port)
	nginx_conf "$d" "$port" "$2"
	sed -i 's/^master_process on;/master_process off;/' "$d/nginx.conf"
	env ${3:+LD_PRELOAD=$LIB} valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
		--log-file="$d/vg.log" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
		</dev/null >"$d/out" 2>&1 &
	vp=$!
	PIDS="$PIDS $vp"
	i=0
	while ! listening "$port"; do # valgrind starts slowly
		i=$((i + 1))
		if [ $i -gt 600 ] || ! kill -0 "$vp" 2>/dev/null; then
			nc_stop "$vp"
			return 1
		fi
		sleep 0.1
	done
	"$BIN/bench_reqs" "$port" 50 "$4" >/dev/null &&
		callgrind_control -z "$vp" >/dev/null 2>&1 &&
		"$BIN/bench_reqs" "$port" "$NC_REQS" "$4" >"$d/reqs" &&
		callgrind_control -d "$vp" >/dev/null 2>&1 || { nc_stop "$vp"; return 1; }
	nc_stop "$vp"
	f=$(ls "$d"/cg.out.* 2>/dev/null | head -n 1)
	[ -n "$f" ] || return 1
	if [ -n "$3" ] && ! grep -q libreqctx.so "$f"; then
		say "  (libreqctx.so was not loaded under valgrind)" >&2
		return 1
	fi
	mv "$f" "$d/requests.cg"
	sed -n 's/^summary: *//p' "$d/requests.cg"
}

# nc_split FILE ADDED: the library's instructions in FILE by source file, per request.
nc_split() {
	callgrind_annotate --threshold=100 --auto=no "$1" 2>/dev/null | awk -v n="$NC_REQS" \
		-v added="$2" '
		function group(f, fn) {
			if (f ~ /\/http\.c$/) return "HTTP/1 scanners, request and response (src/http.c)"
			if (f ~ /\/id\.c$/) return "UUID generation (src/id.c)"
			if (f ~ /\/ctx\.[ch]$/) return "request slots and context switches (src/ctx.c)"
			if (f ~ /\/(evq\.[ch]|epoll\.c|evpoll\.c)$/) return "epoll wrappers and the loop window (src/evq.c, preload/epoll.c)"
			if (fn ~ /^(log_line|log_write|log_bare|plan_log|emit_log|publish|rq_prefix_render|rq_prefix_acquire|rq_prefix_release|cache_take|write|write_slow)$/ || f ~ /\/lines\.[ch]$/)
				return "the access-log line: prefix, one writev (src/io.c, src/lines.c)"
			if (f ~ /\/(handoff\.[ch]|threads\.c)$/) return "mutex wrappers (src/handoff.c)"
			return "read/write paths: fd lookups, request queue, response plan and commit (src/io.c, preload/io.c, fdtab.h)"
		}
		/^ *[0-9,]+ +\( *[0-9.]+%\) / {
			ir = $1; gsub(",", "", ir)
			line = $0
			sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
			obj = ""
			if (match(line, / \[[^]]*\]$/)) {
				obj = substr(line, RSTART + 2, RLENGTH - 3)
				line = substr(line, 1, RSTART - 1)
			}
			k = index(line, ":"); f = substr(line, 1, k - 1); fn = substr(line, k + 1)
			# ours: in the library, or inlined from its sources (callgrind_annotate
			# prints those relative to the directory it runs in, if under it)
			mine = f ~ /(^|\/)(src|preload)\/[a-z0-9_]+\.[ch]$/
			if (obj ~ /libreqctx/ || (obj == "" && mine)) {
				g = group(f, fn); s[g] += ir; lib += ir
				if (mine && !(fn in of)) of[fn] = g
			} else if (obj == "" && f ~ /\/gcc\//) { # a compiler header inlined in one of our functions
				alien[fn] += ir
			}
		}
		END {
			for (fn in alien) {
				g = (fn in of) ? of[fn] : group("", fn)
				s[g] += alien[fn]; lib += alien[fn]
			}
			for (g in s) printf "%8.0f  %s\n", s[g] / n, g | "sort -rn"
			close("sort -rn")
			printf "%8.0f  libc functions the library calls (memcpy, memchr, clock_gettime, errno)\n", added - lib / n
		}'
}

row11() {
	say "== 11. nginx: instructions added per request (callgrind on the serving process, $NC_REQS keep-alive requests from bench_reqs)"
	if ! have valgrind || ! have callgrind_control || ! [ -x "$NGINX" ] || ! [ -x "$BIN/bench_reqs" ]; then
		say "  skipped: valgrind, nginx or bench_reqs missing (apt-get install -y valgrind nginx-light; make bench)"
		return
	fi
	for conns in 1 32; do
		a=$(nc_run plain$conns plain "" $conns) && b=$(nc_run pre$conns plain with $conns) &&
			c=$(nc_run native$conns native "" $conns) || {
			say "  $conns connection(s): a callgrind run failed (see $W/ngxcost_*)"
			continue
		}
		grep -q '^\[req:' "$W/ngxcost_pre$conns/access.log" ||
			say "  warning: the preloaded nginx's access log has no [req:...] lines"
		grep -q "echoed $NC_REQS\$" "$W/ngxcost_pre$conns/reqs" ||
			say "  warning: not every response echoed an X-Request-Id ($(cat "$W/ngxcost_pre$conns/reqs"))"
		pa=$(calc "$a / $NC_REQS"); pb=$(calc "$b / $NC_REQS"); pc=$(calc "$c / $NC_REQS")
		d=$(calc "$pb - $pa")
		say "  over $conns connection(s): plain $(fmt "$pa" %.0f), native \$request_id $(fmt "$pc" %.0f)" \
			"(+$(fmt "$(calc "$pc - $pa")" %.0f)), under the library $(fmt "$pb" %.0f) Ir/request: +$(fmt "$d" %.0f)"
		row 11 "nginx Ir/request added, $conns conn(s)" "$(fmt "$pa" %.0f)" "$(fmt "$pb" %.0f)" \
			"+$(fmt "$d" %.0f) Ir/req" "<= 1500" \
			"$(awk -v x="$d" 'BEGIN { print (x <= 1500) ? "met" : "MISSED" }')"
		row 11 "nginx Ir/request, native \$request_id, $conns conn(s)" "$(fmt "$pa" %.0f)" \
			"$(fmt "$pc" %.0f)" "+$(fmt "$(calc "$pc - $pa")" %.0f) Ir/req" "" info
		say "  where the +$(fmt "$d" %.0f) go (instructions per request):"
		nc_split "$W/ngxcost_pre$conns/requests.cg" "$d" | sed 's/^/  /'
	done
	cmd "$NGINX -p DIR -c DIR/nginx.conf   # row 3's conf with master_process off; under" \
		"[LD_PRELOAD=$LIB] valgrind --tool=callgrind --callgrind-out-file=DIR/cg.out"
	cmd "$BIN/bench_reqs PORT 50 CONNS; callgrind_control -z PID;" \
		"$BIN/bench_reqs PORT $NC_REQS CONNS; callgrind_control -d PID   # CONNS = 1, 32"
	cmd "grep summary DIR/cg.out.1   # / $NC_REQS; callgrind_annotate --inclusive=yes DIR/cg.out.1 for the functions"
	cleanup_servers
}

case " ${BENCH_ROWS:-11} " in
*" 11 "*) row11 ;;
esac
