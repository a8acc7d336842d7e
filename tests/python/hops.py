"""The request handler the asyncio test servers share (tests/test_python.c).

Knows nothing of reqctx. For each request it logs with `logging`, naming
the request's token, before and after every kind of hop asyncio makes:
callbacks from call_soon, call_later and call_at (which log themselves),
asyncio.sleep, a bare task step, gather, a task created inside the request,
run_in_executor and to_thread (the worker thread logs), a lock that another
request releases, a call through a pooled keep-alive upstream connection,
and a background task that logs after the response is gone.

LINES is the number of lines it logs per request; a server adds its own
access-log line. Lines logged outside any request say "tick" (a timer armed
at start-up) or "server" (start-up and shutdown).
"""
import asyncio
import logging
import random
import sys

log = logging.getLogger('app')

LINES = 25

# Delays, in seconds, of the timers and sleeps in a request.
_LO, _HI = 0.0005, 0.003
# Period of the start-up timer.
TICK = 0.05


def setup_logging():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(name)s %(message)s')


def start_ticks(loop):
    """A timer armed at start-up, outside any request, that re-arms itself."""
    n = [0]

    def tick():
        n[0] += 1
        log.info('tick %d', n[0])
        loop.call_later(TICK, tick)
    loop.call_later(TICK, tick)


def _delay():
    return random.uniform(_LO, _HI)


class Hops:
    """One server's handler state. upstream(tk) returns the upstream's body."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.lock = asyncio.Lock()
        self.lock_waits = 0
        self.background = set()

    def _cb(self, fut, tk, what):
        log.info('%s in %s', tk, what)
        fut.set_result(None)

    def _work(self, tk, what):
        log.info('%s in %s', tk, what)
        return what

    async def _child(self, tk, i):
        log.info('%s child %d start', tk, i)
        await asyncio.sleep(_delay())
        log.info('%s child %d end', tk, i)

    async def _late(self, tk):
        await asyncio.sleep(_delay())
        log.info('%s background', tk)

    async def handle(self, tk):
        loop = asyncio.get_running_loop()
        log.info('%s start', tk)

        f = loop.create_future()
        loop.call_soon(self._cb, f, tk, 'call_soon')
        await f
        log.info('%s after call_soon', tk)

        f = loop.create_future()
        loop.call_later(_delay(), self._cb, f, tk, 'call_later')
        await f
        log.info('%s after call_later', tk)

        f = loop.create_future()
        loop.call_at(loop.time() + _delay(), self._cb, f, tk, 'call_at')
        await f
        log.info('%s after call_at', tk)

        await asyncio.sleep(_delay())
        log.info('%s after sleep', tk)
        await asyncio.sleep(0)
        log.info('%s after step', tk)

        await asyncio.gather(self._child(tk, 1), self._child(tk, 2))
        log.info('%s after gather', tk)
        await asyncio.create_task(self._child(tk, 3))
        log.info('%s after task', tk)

        await loop.run_in_executor(None, self._work, tk, 'run_in_executor')
        log.info('%s after run_in_executor', tk)
        await asyncio.to_thread(self._work, tk, 'to_thread')
        log.info('%s after to_thread', tk)

        if self.lock.locked():
            self.lock_waits += 1
        async with self.lock:
            await asyncio.sleep(0)
        log.info('%s after lock', tk)

        body = await self.upstream(tk)
        log.info('%s after upstream %s', tk, body)

        t = asyncio.create_task(self._late(tk))
        self.background.add(t)
        t.add_done_callback(self.background.discard)
        log.info('%s end', tk)
        return 'ok %s\n' % tk
