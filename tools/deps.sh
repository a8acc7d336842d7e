#!/bin/sh
# Checks the Debian packages a make target needs. As root it installs the
# missing ones; otherwise it prints the exact apt-get line and fails.
set -eu
what=${1:-test}
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
want() { have_pkg "$1" || need="$need $1"; }

want gcc
want make
want libc6-dev
case "$what" in
test)  want libcriterion-dev; want libunwind-dev; want curl; want python3; want nginx-light
       want lighttpd; want apache2-bin; want media-types; want postgresql-client; want jq
       want pkg-config
       want openjdk-17-jre-headless; want strace; want python3-h2; want python3-hpack; want php-fpm
       # The Python adapter's extension (python3-dev) and the asyncio servers of test_python.
       want python3-dev; want python3-aiohttp; want python3-uvicorn; want python3-uvloop
       want libssl-dev; want openssl
       # Node and its Node-API headers: Debian's nodejs + libnode-dev, unless a nodejs
       # package that ships /usr/include/node (nodesource's) is installed already.
       want nodejs; [ -f /usr/include/node/node_api.h ] || want libnode-dev
       # npm: make test installs the pinned pino (tests/node/pino) with npm ci.
       command -v npm >/dev/null 2>&1 || want npm ;;
demo)  want curl ;;
bench) want valgrind; want strace; want wrk; want nginx-light; want python3; want nodejs
       want python3-dev; want python3-aiohttp; want python3-uvloop
       want libssl-dev; want openssl; want nghttp2-client ;;
esac
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "reqctx: installing:$need" >&2
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null; then
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null
	fi
	exit 0
fi
echo "reqctx: missing packages; run as root:" >&2
echo "  apt-get install -y$need" >&2
exit 1
