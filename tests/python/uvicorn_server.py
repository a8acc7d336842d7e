"""A uvicorn server for tests/test_python.c (knows nothing of reqctx).

A bare ASGI app: GET /t/<token> runs hops.Hops.handle, which calls the
upstream through one aiohttp.ClientSession (at most 4 keep-alive
connections) made at lifespan start-up. uvicorn's own logging and access
log are on. --loop picks uvicorn's loop: asyncio, or uvloop. Prints
"port N lines K" on stdout (K: lines logged per request) before uvicorn
starts listening; on SIGTERM uvicorn shuts down and the app logs its counts.

usage: uvicorn_server.py --upstream PORT --loop asyncio|uvloop
"""
import argparse
import asyncio
import logging
import socket
import sys

import aiohttp
import uvicorn

import hops

log = logging.getLogger('app')


class App:
    def __init__(self, up_port):
        self.url = 'http://127.0.0.1:%d/up' % up_port
        self.queued = 0

    async def startup(self):
        async def on_queued(session, ctx, params):
            self.queued += 1
        trace = aiohttp.TraceConfig()
        trace.on_connection_queued_start.append(on_queued)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4),
                                             trace_configs=[trace])
        self.hops = hops.Hops(self.upstream)
        loop = asyncio.get_running_loop()
        hops.start_ticks(loop)
        log.info('server loop %s.%s', type(loop).__module__, type(loop).__name__)

    async def upstream(self, tk):
        async with self.session.get(self.url) as r:
            return await r.text()

    async def __call__(self, scope, receive, send):
        if scope['type'] == 'lifespan':
            while True:
                msg = await receive()
                if msg['type'] == 'lifespan.startup':
                    await self.startup()
                    await send({'type': 'lifespan.startup.complete'})
                elif msg['type'] == 'lifespan.shutdown':
                    log.info('server stats lock_waits=%d pool_waits=%d', self.hops.lock_waits, self.queued)
                    await self.session.close()
                    await send({'type': 'lifespan.shutdown.complete'})
                    return
        if scope['type'] != 'http':
            return
        body = (await self.hops.handle(scope['path'][len('/t/'):])).encode()
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'text/plain'),
                                (b'content-length', b'%d' % len(body))]})
        await send({'type': 'http.response.body', 'body': body})


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--upstream', type=int, required=True)
    p.add_argument('--loop', choices=('asyncio', 'uvloop'), required=True)
    args = p.parse_args()
    hops.setup_logging()
    log.info('server starting, python %s, uvicorn %s', sys.version.split()[0], uvicorn.__version__)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    config = uvicorn.Config(App(args.upstream), loop=args.loop, http='h11', lifespan='on', log_config=None,
                            timeout_keep_alive=60)
    print('port %d lines %d' % (sock.getsockname()[1], hops.LINES + 1), flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    log.info('server stopped')


if __name__ == '__main__':
    main()
