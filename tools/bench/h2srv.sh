# tools/bench/h2srv.sh: nginx HTTP/2 throughput under the library next to
# plain nginx, in the same run, over h2c (prior knowledge) and h2 over TLS.
# Sourced by tools/bench/run.sh, whose helpers and variables it uses and
# whose summary gets its rows ("h2c", "h2"); BENCH_H2=0 skips it.
#
# nginx with one worker, `listen ... http2` and `listen ... ssl http2` (a
# self-signed RSA-2048 certificate made here), `return 200`; h2load -t1 -c32
# -m8 (32 connections, 8 concurrent streams each), so that handshakes happen
# only as h2load connects and the rows measure what the library adds to
# each stream: the frame scanner and HPACK decoder on the client's bytes,
# the planner that adds x-request-id to each response's HEADERS, and (h2)
# the SSL_read and SSL_write wrappers. Rounds alternate plain, preload,
# plain, ... and the medians are compared. Goal: preload / plain >= 0.97.

# h2srv_conf DIR PORT SPORT: the nginx configuration.
h2srv_conf() {
	mkdir -p "$1/tmp"
	cat >"$1/nginx.conf" <<EOC
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
  keepalive_requests 10000000; # (nginx 1.19.7 on: it bounds HTTP/2 requests per connection too)
  server {
    listen 127.0.0.1:$2 http2;
    listen 127.0.0.1:$3 ssl http2;
    ssl_certificate $W/h2.cert;
    ssl_certificate_key $W/h2.key;
    location / { return 200 "ok\n"; }
  }
}
EOC
}

# h2srv_rps URL: requests per second of one h2load run.
h2srv_rps() {
	h2load -t1 -c32 -m8 -D "$SECS" "$1" 2>&1 | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p'
}

# h2srv_row NAME SCHEME PLAIN_PORT PRELOAD_PORT
h2srv_row() {
	ab_rounds "$1" h2srv_rps "$2://127.0.0.1:$3/" "$2://127.0.0.1:$4/"
	say "  $1 plain:   $(tr '\n' ' ' <"$W/rps.$1_plain")-> median $a req/s"
	say "  $1 preload: $(tr '\n' ' ' <"$W/rps.$1_pre")-> median $b req/s"
	if [ -z "$a" ] || [ -z "$b" ]; then
		say "  no figures: h2load reported nothing"
		return
	fi
	pp=$(calc "$b / $a")
	say "  $1 preload/plain $(fmt "$pp" %.3f)"
	row "$1" "nginx $1 req/s (h2load -c32 -m8): preload vs plain" "$a" "$b" \
		"$(fmt "$pp" %.3f)" ">= 0.97" "$(awk -v x="$pp" 'BEGIN { print (x >= 0.97) ? "met" : "MISSED" }')"
}

row_h2srv() {
	say "== h2c, h2. nginx HTTP/2, 1 worker, h2load -t1 -c32 -m8, ${ROUNDS} alternating rounds of ${SECS} s"
	if ! [ -x "$NGINX" ] || ! have h2load || ! have openssl; then
		say "  skipped: nginx, h2load or openssl missing (apt-get install -y nginx-light nghttp2-client openssl)"
		return
	fi
	if ! ngx_cert h2; then
		say "  skipped: openssl could not make a certificate"
		return
	fi
	ngx_start h2_plain without 2 h2srv_conf || return
	pa=$port
	sa=$sport
	ngx_start h2_pre with 2 h2srv_conf || return
	pb=$port
	sb=$sport
	h2srv_row h2c http "$pa" "$pb"
	h2srv_row h2 https "$sa" "$sb"
	if ! grep -q '^\[req:' "$W/h2_pre/access.log"; then
		say "  warning: the preloaded nginx's access log lacks the [req:...] lines"
	fi
	cmd "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout $W/h2.key -out $W/h2.cert"
	cmd "[LD_PRELOAD=$LIB] $NGINX -p DIR -c DIR/nginx.conf   # DIR=$W/h2_plain, h2_pre; the conf is tools/bench/h2srv.sh h2srv_conf"
	cmd "h2load -t1 -c32 -m8 -D $SECS http://127.0.0.1:PORT/ (and https://...:SPORT/)   # A B A B ..., $ROUNDS rounds"
	cleanup_servers
}

[ "${BENCH_H2:-1}" = 0 ] || row_h2srv
