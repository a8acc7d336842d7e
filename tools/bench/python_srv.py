"""An aiohttp server logging 2 lines per request, for tools/bench/python.sh.

GET /x logs a line with `logging`, awaits asyncio.sleep(0) (one task step),
logs another and answers "ok". The access log is off.

usage: python_srv.py PORT
"""
import asyncio
import logging
import sys

from aiohttp import web

log = logging.getLogger('app')


async def handler(request):
    log.info('start %s', request.path)
    await asyncio.sleep(0)
    log.info('end %s', request.path)
    return web.Response(text='ok\n')


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(message)s')
    app = web.Application()
    app.router.add_get('/x', handler)
    web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == '__main__':
    main()
