"""Cost of one asyncio hop, for tools/bench/python.sh (needs libreqctx.so preloaded).

usage: python_hops.py MODE N ROUNDS [uvloop]
  MODE  loop     the loop as it is (with the adapter, unless REQCTX_RUNTIMES=0)
        ctypes   the adapter's carrier rule done through ctypes instead of
                 _reqctx (run it with REQCTX_RUNTIMES=0): each callback the
                 loop schedules captures reqctx_handle_take() and runs between
                 two reqctx_handle_enter() calls (no ContextVar, so less than
                 the adapter does)
        toggle   the adapter on and off in turn within this one process
                 (needs it installed): prints "on X off Y" per round
        calls    ns per call of each channel: _reqctx.take() and the same
                 function through ctypes
Two tasks, each started in a request of its own (reqctx_run), take turns
for N hops in all (`await asyncio.sleep(0)`: a task step scheduled with
call_soon), so that every hop enters the other request. Prints the best of
ROUNDS runs as "ns_per_hop X" (CPU time of the thread, which a busy
machine disturbs less than wall time), or for calls "ext_ns X ctypes_ns Y".
"""
import asyncio
import ctypes
import sys
import time

lib = ctypes.CDLL(None)


def _ctypes_rule():
    from asyncio import base_events, events
    take, enter = lib.reqctx_handle_take, lib.reqctx_handle_enter
    take.restype = enter.restype = ctypes.c_ulonglong
    take.argtypes = []
    enter.argtypes = [ctypes.c_ulonglong]

    def wrap(cls, pos):
        def make(*a):
            cb, h = a[pos], take()

            def run(*args):
                prev = enter(h)
                try:
                    return cb(*args)
                finally:
                    enter(prev)
            return cls(*a[:pos], run, *a[pos + 1:])
        return make

    proxy = type(sys)('asyncio.events')
    proxy.__dict__.update(events.__dict__)
    proxy.Handle = wrap(events.Handle, 0)
    proxy.TimerHandle = wrap(events.TimerHandle, 1)
    base_events.events = proxy


async def hops(n):
    sleep = asyncio.sleep
    for _ in range(n):
        await sleep(0)


def in_request(rid, fn):
    """Calls fn() inside a request of ID rid (reqctx_run)."""
    cb = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: fn())
    if lib.reqctx_run(rid, cb, None) != 0:
        raise RuntimeError('reqctx_run failed')


def run_once(loop, n):
    tasks = []
    for rid in (b'bench-a', b'bench-b'):
        in_request(rid, lambda: tasks.append(loop.create_task(hops(n // 2))))
    t = time.thread_time_ns()
    loop.run_until_complete(asyncio.gather(*tasks))
    return (time.thread_time_ns() - t) / (n // 2 * 2)


def calls(n):
    import _reqctx
    f = lib.reqctx_handle_take
    f.restype = ctypes.c_ulonglong
    f.argtypes = []
    best = [float('inf'), float('inf')]
    for _ in range(5):
        for i, fn in enumerate((_reqctx.take, f)):
            t = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter_ns() - t) / n)
    return best


_UVLOOP_METHODS = ('call_soon', 'call_soon_threadsafe', 'call_later', 'call_at')


def toggle(loop, n, rounds, uv):
    """The adapter's patches taken out and put back in turn; yields (on, off) ns per hop."""
    from asyncio import base_events
    proxy = base_events.events
    real = proxy._reqctx_real
    if uv:
        import uvloop
        methods = {k: uvloop.Loop.__dict__[k] for k in _UVLOOP_METHODS}
    for _ in range(rounds):
        on = run_once(loop, n)
        base_events.events = real
        if uv:
            for k in methods:
                delattr(uvloop.Loop, k)
        off = run_once(loop, n)
        base_events.events = proxy
        if uv:
            for k, v in methods.items():
                setattr(uvloop.Loop, k, v)
        yield on, off


def main():
    mode, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == 'calls':
        print('ext_ns %.1f ctypes_ns %.1f' % tuple(calls(n)))
        return
    if mode == 'ctypes':
        _ctypes_rule()
    if sys.argv[4:] == ['uvloop']:
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    if mode == 'toggle':
        for on, off in toggle(loop, n, rounds, sys.argv[4:] == ['uvloop']):
            print('on %.1f off %.1f' % (on, off))
        loop.close()
        return
    best = min(run_once(loop, n) for _ in range(rounds))
    loop.close()
    print('ns_per_hop %.1f' % best)


if __name__ == '__main__':
    main()
