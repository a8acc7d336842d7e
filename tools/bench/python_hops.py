"""Cost of one asyncio hop, for tools/bench/python.sh.

usage: python_hops.py MODE N ROUNDS [uvloop]
  MODE  plain    the loop as it is (with the adapter, if sitecustomize installed it)
        ctypes   the same carrier rule through ctypes instead of _reqctx:
                 each scheduled callback captures reqctx_handle_take() and runs
                 between two reqctx_handle_enter() calls
        calls    ns per call of each channel: _reqctx.take() and a ctypes call
Prints the best of ROUNDS runs of N hops (`await asyncio.sleep(0)`: one task
step, scheduled with call_soon) as "ns_per_hop X", or for calls
"ext_ns X ctypes_ns Y".
"""
import asyncio
import sys
import time


def _ctypes_rule():
    import ctypes
    from asyncio import base_events, events
    lib = ctypes.CDLL(None)
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

    class Events(type(sys)):
        def __getattr__(self, name):
            return getattr(events, name)
    proxy = Events('asyncio.events')
    proxy.Handle = wrap(events.Handle, 0)
    proxy.TimerHandle = wrap(events.TimerHandle, 1)
    base_events.events = proxy


async def hops(n):
    sleep = asyncio.sleep
    t = time.perf_counter_ns()
    for _ in range(n):
        await sleep(0)
    return (time.perf_counter_ns() - t) / n


def calls(n):
    import ctypes
    import _reqctx
    lib = ctypes.CDLL(None)
    f = lib.reqctx_handle_take
    f.restype = ctypes.c_ulonglong
    f.argtypes = []
    take = _reqctx.take
    best = [float('inf'), float('inf')]
    for _ in range(5):
        for i, fn in enumerate((take, f)):
            t = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter_ns() - t) / n)
    return best


def main():
    mode, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == 'calls':
        ext, ct = calls(n)
        print('ext_ns %.1f ctypes_ns %.1f' % (ext, ct))
        return
    if mode == 'ctypes':
        _ctypes_rule()
    if sys.argv[4:] == ['uvloop']:
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    best = min(loop.run_until_complete(hops(n)) for _ in range(rounds))
    loop.close()
    print('ns_per_hop %.1f' % best)


if __name__ == '__main__':
    main()
