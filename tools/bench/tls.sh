# tools/bench/tls.sh: nginx HTTPS throughput under the library next to plain
# nginx, in the same run. Sourced by tools/bench/run.sh, whose helpers and
# variables it uses and whose summary gets its row ("tls"); BENCH_TLS=0
# skips it.
#
# nginx with one worker and `listen ... ssl` (a self-signed RSA-2048
# certificate made here with openssl), keep-alive; wrk -t1 -c32 over https,
# so that handshakes happen only as wrk connects and the row measures what
# the library adds to each request's plaintext: its SSL_read and SSL_write
# wrappers, the scanners and the header. Rounds alternate plain, preload,
# plain, ... and the medians are compared. Goal: preload / plain >= 0.97.

# tls_conf DIR PORT: the nginx configuration.
tls_conf() {
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
  access_log $1/access.log combined;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$2 ssl;
    ssl_certificate $W/tls.cert;
    ssl_certificate_key $W/tls.key;
    location / { return 200 "ok\n"; }
  }
}
EOF
}

# tls_rps PORT: requests per second of one wrk run over https.
tls_rps() {
	wrk -t1 -c32 -d"${SECS}s" "https://127.0.0.1:$1/" 2>&1 | awk '/^Requests\/sec:/ { print $2 }'
}

row_tls() {
	say "== tls. nginx HTTPS, 1 worker, wrk -t1 -c32, ${ROUNDS} alternating rounds of ${SECS} s"
	if ! [ -x "$NGINX" ] || ! have wrk || ! have openssl; then
		say "  skipped: nginx, wrk or openssl missing (apt-get install -y nginx-light wrk openssl)"
		return
	fi
	if ! ngx_cert tls; then
		say "  skipped: openssl could not make a certificate"
		return
	fi
	ngx_start tls_plain without 1 tls_conf || return
	pa=$port
	ngx_start tls_pre with 1 tls_conf || return
	pb=$port
	ab_rounds tls tls_rps "$pa" "$pb"
	say "  plain:   $(tr '\n' ' ' <"$W/rps.tls_plain")-> median $a req/s"
	say "  preload: $(tr '\n' ' ' <"$W/rps.tls_pre")-> median $b req/s"
	if ! grep -q '^\[req:' "$W/tls_pre/access.log"; then
		say "  warning: the preloaded nginx's access log lacks the [req:...] lines"
	fi
	cmd "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout $W/tls.key -out $W/tls.cert"
	cmd "[LD_PRELOAD=$LIB] $NGINX -p DIR -c DIR/nginx.conf   # DIR=$W/tls_plain, tls_pre; the conf is tools/bench/tls.sh tls_conf"
	cmd "wrk -t1 -c32 -d${SECS}s https://127.0.0.1:PORT/   # A B A B ..., $ROUNDS rounds"
	if [ -z "$a" ] || [ -z "$b" ]; then
		say "  no figures: wrk reported nothing"
		cleanup_servers
		return
	fi
	pp=$(calc "$b / $a")
	say "  preload/plain $(fmt "$pp" %.3f)"
	row tls "nginx HTTPS req/s: preload vs plain" "$a" "$b" "$(fmt "$pp" %.3f)" ">= 0.97" \
		"$(awk -v x="$pp" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
	cleanup_servers
}

[ "${BENCH_TLS:-1}" = 0 ] || row_tls
