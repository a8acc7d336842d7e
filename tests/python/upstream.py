"""A keep-alive HTTP upstream for the asyncio test servers (run without reqctx).

Listens on 127.0.0.1 on a free port and prints "port N" on stdout. Answers
every GET after 0.5 to 3 ms with 200 and the body "up", keeping the
connection open. Prints "conn N" on stderr for each connection that brings
a request, so that a test can count how many its client opened.

usage: upstream.py
"""
import asyncio
import random
import sys


async def serve(reader, writer, n=[0]):
    first = True
    try:
        while True:
            head = await reader.readuntil(b'\r\n\r\n')
            if not head.startswith(b'GET '):
                break
            if first:
                first = False
                n[0] += 1
                print('conn %d' % n[0], file=sys.stderr, flush=True)
            await asyncio.sleep(random.uniform(0.0005, 0.003))
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nup')
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main():
    server = await asyncio.start_server(serve, '127.0.0.1', 0)
    print('port %d' % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
