# tools/bench/nginx.sh: what the nginx rows share (run.sh's rows 3 and 6,
# tls.sh, h2srv.sh): starting nginx on free ports, a certificate, rounds
# that alternate two servers. Sourced by tools/bench/run.sh after its
# helpers (free_port, wait_port, stop, median, say), which it uses.

# ngx_start NAME PRELOAD PORTS CONF [ARG]: starts nginx in $W/NAME, under the
# library if PRELOAD is "with", on the config that `CONF DIR PORT [ARG]`
# (PORTS 1) or `CONF DIR PORT SPORT [ARG]` (PORTS 2) writes to DIR/nginx.conf,
# each port a free one; tries other ports when one was taken. Sets port
# (and sport) and pid once nginx listens on each.
ngx_start() {
	d=$W/$1
	mkdir -p "$d"
	chmod 755 "$d"
	for try in 1 2 3 4 5; do
		port=$(free_port)
		if [ "$3" = 2 ]; then
			sport=$(free_port)
			"$4" "$d" "$port" "$sport" ${5+"$5"}
		else
			"$4" "$d" "$port" ${5+"$5"}
		fi
		if [ "$2" = with ]; then
			LD_PRELOAD=$LIB "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
				</dev/null >"$d/out" 2>&1 &
		else
			"$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" </dev/null >"$d/out" 2>&1 &
		fi
		pid=$!
		PIDS="$PIDS $pid"
		wait_port "$port" "$pid" && { [ "$3" != 2 ] || wait_port "$sport" "$pid"; } && return 0
		stop "$pid"
	done
	say "  nginx ($1) did not start: $(tail -n 3 "$d/error.log" 2>/dev/null)"
	return 1
}

# ngx_cert NAME: a self-signed RSA-2048 certificate for 127.0.0.1, $W/NAME.cert
# and $W/NAME.key (readable by nginx's workers); fails if openssl does.
ngx_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
		-keyout "$W/$1.key" -out "$W/$1.cert" >/dev/null 2>&1 || return 1
	chmod 644 "$W/$1.key" || :
}

# ab_rounds NAME FN A B: ROUNDS alternating rounds of `FN A` and `FN B`, each
# printing one figure, into $W/rps.NAME_plain and $W/rps.NAME_pre; sets a and
# b to their medians.
ab_rounds() {
	: >"$W/rps.$1_plain"; : >"$W/rps.$1_pre"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		"$2" "$3" >>"$W/rps.$1_plain"
		"$2" "$4" >>"$W/rps.$1_pre"
		r=$((r + 1))
	done
	a=$(median <"$W/rps.$1_plain")
	b=$(median <"$W/rps.$1_pre")
}
