"""A standard-library asyncio server for tests/test_python.c (knows nothing of reqctx).

Runs on any CPython 3.11 or later, with nothing but the standard library:
asyncio.start_server, one task per connection that reads request after
request (woken by the connection's reads), and hops.Hops.handle for each.
The upstream is called through a pool of at most 4 keep-alive connections
(an asyncio.Queue of idle ones: a request that finds none waits for one that
another request puts back). After each response it logs an access line.
--eager uses asyncio.eager_task_factory (3.12 and later): a task's first
step runs inside create_task. Prints "port N lines K" on stdout once it
listens; on SIGTERM it logs its counts and stops.

usage: asyncio_server.py --upstream PORT [--eager]
"""
import argparse
import asyncio
import logging
import signal
import sys

import hops

log = logging.getLogger('app')

POOL = 4


class Pool:
    """Keep-alive connections to the upstream, shared by all requests."""

    def __init__(self, port):
        self.port = port
        self.idle = asyncio.Queue()
        self.opened = 0
        self.waits = 0

    async def get(self, tk):
        if self.idle.empty() and self.opened < POOL:
            self.opened += 1
            try:
                conn = await asyncio.open_connection('127.0.0.1', self.port)
            except BaseException:
                self.opened -= 1
                raise
        else:
            if self.idle.empty():
                self.waits += 1
            conn = await self.idle.get()
        reader, writer = conn
        try:
            writer.write(b'GET /up HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
            await writer.drain()
            head = await reader.readuntil(b'\r\n\r\n')
            n = 0
            for line in head.split(b'\r\n'):
                if line.lower().startswith(b'content-length:'):
                    n = int(line.split(b':', 1)[1])
            body = await reader.readexactly(n)
        except BaseException:
            self.opened -= 1
            writer.close()
            raise
        self.idle.put_nowait(conn)
        return body.decode()


async def run(args):
    loop = asyncio.get_running_loop()
    if args.eager:
        loop.set_task_factory(asyncio.eager_task_factory)
    pool = Pool(args.upstream)
    h = hops.Hops(pool.get)

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                line = head.split(b'\r\n', 1)[0].decode('latin-1')
                method, path, _ = line.split(' ', 2)
                body = (await h.handle(path[len('/t/'):])).encode()
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n'
                             b'Content-Length: %d\r\n\r\n' % len(body) + body)
                await writer.drain()
                log.info('access "%s" 200 %d', line, len(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    hops.start_ticks(loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    log.info('server listening on port %d, %s, eager %s', port, type(loop).__name__, args.eager)
    print('port %d lines %d' % (port, hops.LINES + 1), flush=True)
    await stop.wait()
    log.info('server stats lock_waits=%d pool_waits=%d upstream_conns=%d', h.lock_waits, pool.waits, pool.opened)
    server.close()
    await server.wait_closed()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--upstream', type=int, required=True)
    p.add_argument('--eager', action='store_true')
    args = p.parse_args()
    hops.setup_logging()
    site = sys.modules.get('sitecustomize')
    log.info('server starting, python %s, sitecustomize %s', sys.version.split()[0],
             getattr(site, '__file__', None))
    asyncio.run(run(args))
    log.info('server stopped')


if __name__ == '__main__':
    main()
