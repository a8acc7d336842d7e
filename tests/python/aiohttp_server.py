"""An aiohttp server for tests/test_python.c (knows nothing of reqctx).

GET /t/<token> runs hops.Hops.handle, which calls the upstream through one
aiohttp.ClientSession whose connector keeps at most 4 keep-alive
connections, so that requests queue for a connection another request frees.
aiohttp's access log is on. Prints "port N lines K" on stdout once it
listens (K: lines logged per request); on SIGTERM it logs its counts and
stops.

usage: aiohttp_server.py --upstream PORT
"""
import argparse
import asyncio
import logging
import signal
import socket
import sys

import aiohttp
from aiohttp import web

import hops

log = logging.getLogger('app')


async def run(up_port):
    loop = asyncio.get_running_loop()
    queued = [0]

    async def on_queued(session, ctx, params):
        queued[0] += 1
    trace = aiohttp.TraceConfig()
    trace.on_connection_queued_start.append(on_queued)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4), trace_configs=[trace])
    url = 'http://127.0.0.1:%d/up' % up_port

    async def upstream(tk):
        async with session.get(url) as r:
            return await r.text()

    h = hops.Hops(upstream)

    async def handler(request):
        return web.Response(text=await h.handle(request.match_info['tk']))

    app = web.Application()
    app.router.add_get('/t/{tk}', handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    site = web.SockSite(runner, sock)
    await site.start()
    hops.start_ticks(loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    log.info('server listening on port %d, %s', sock.getsockname()[1], type(loop).__name__)
    print('port %d lines %d' % (sock.getsockname()[1], hops.LINES + 1), flush=True)
    await stop.wait()
    log.info('server stats lock_waits=%d pool_waits=%d', h.lock_waits, queued[0])
    await runner.cleanup()
    await session.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--upstream', type=int, required=True)
    args = p.parse_args()
    hops.setup_logging()
    log.info('server starting, python %s', sys.version.split()[0])
    asyncio.run(run(args.upstream))
    log.info('server stopped')


if __name__ == '__main__':
    main()
