"""reqctx's asyncio adapter: the request follows callbacks through the loop.

libreqctx.so already puts a thread in the right request whenever it does I/O
on a connection, but asyncio runs callbacks from its own queues, and a task
step that runs after another connection was read would log under that other
request. This module applies the carrier rule inside the loop: a callback
captures the thread's C context when it is scheduled and runs in it (see
_reqctx.c for the rule and the C side). It patches, each when it is first
imported (or at once if it already is):

  asyncio               the stock loops' call_soon, call_soon_threadsafe,
                        call_later and call_at (base_events makes its Handle
                        and TimerHandle through a stand-in for asyncio.events
                        that wraps their callbacks), signal handlers, and
                        run_forever, after which the context it began with is
                        back. Handles made for readers and writers are left
                        alone: the C library sets their request from the fd.
  concurrent.futures.thread
                        ThreadPoolExecutor.submit, so run_in_executor and
                        asyncio.to_thread run in the submitting request.
  uvloop                the same methods on uvloop.Loop, which every loop
                        uvloop.new_event_loop(), uvloop.install() and
                        uvicorn's --loop uvloop create is.

Nothing here runs per hop in Python: the wrappers are _reqctx's C objects.
"""
import sys

import _reqctx

_done = set()        # names already patched
_warned = []


def _say(msg):
    """The adapter's one line on stderr."""
    if not _warned:
        _warned.append(msg)
        try:
            sys.stderr.write('reqctx: %s\n' % msg)
            sys.stderr.flush()
        except Exception:
            pass


def _events_proxy(real):
    """asyncio.events as base_events (or unix_events) sees it.

    A plain module holding what asyncio.events holds, except that its Handle
    and TimerHandle wrap the callback they are given. It is a copy, with no
    __getattr__, so that the interpreter's attribute caches work for it as
    they do for the real module; a name rebound in asyncio.events later is
    not seen through it.
    """
    proxy = type(sys)(real.__name__, real.__doc__)
    proxy.__dict__.update(real.__dict__)
    proxy.Handle = _reqctx.Wrap(real.Handle, 0, 3)
    proxy.TimerHandle = _reqctx.Wrap(real.TimerHandle, 1, 4)
    proxy._reqctx_real = real
    return proxy


def _keep_context(run_forever):
    """run_forever, after which the thread's context is the one it began in."""
    def wrapper(self, *args, **kwargs):
        prev = _reqctx.take()
        try:
            return run_forever(self, *args, **kwargs)
        finally:
            _reqctx.enter(prev)
    wrapper.__name__ = run_forever.__name__
    wrapper.__qualname__ = getattr(run_forever, '__qualname__', run_forever.__name__)
    wrapper.__doc__ = run_forever.__doc__
    wrapper.__wrapped__ = run_forever
    wrapper._reqctx = True
    return wrapper


def _patch_asyncio(asyncio):
    from asyncio import base_events, events
    mods = [base_events]
    if sys.platform != 'win32':
        from asyncio import unix_events
        mods.append(unix_events)
    for m in mods:
        if m.__dict__.get('events') is not events:
            raise RuntimeError('%s.events is not asyncio.events' % m.__name__)
    for m in mods:
        m.events = _events_proxy(events)
    loop = base_events.BaseEventLoop
    loop.run_forever = _keep_context(loop.run_forever)


def _patch_futures_thread(thread):
    pool = thread.ThreadPoolExecutor
    submit = pool.submit

    def wrapper(self, fn, /, *args, **kwargs):
        return submit(self, _reqctx.bind(fn), *args, **kwargs)
    wrapper.__name__ = submit.__name__
    wrapper.__qualname__ = submit.__qualname__
    wrapper.__doc__ = submit.__doc__
    wrapper.__wrapped__ = submit
    pool.submit = wrapper


def _patch_uvloop(uvloop):
    loop, base = uvloop.Loop, uvloop.loop.Loop
    method = _reqctx.Method
    if not issubclass(loop, base):
        raise RuntimeError('uvloop.Loop is not a uvloop.loop.Loop')
    # (name, index of the callback counting self, keyword of the Context)
    for name, pos, ctx in (('call_soon', 1, 'context'), ('call_soon_threadsafe', 1, 'context'),
                           ('call_later', 2, 'context'), ('call_at', 2, 'context'),
                           ('add_signal_handler', 2, None)):
        setattr(loop, name, method(getattr(base, name), pos, ctx))

    # uvloop writes a transport's bytes at the end of the loop iteration, in
    # whatever request is current then, and the upstream connection carries
    # that request back with the answer. An outgoing connection whose write
    # buffer limit is 0 writes at once, inside the callback that wrote.
    async def create_connection(self, *args, **kwargs):
        transport, protocol = await base.create_connection(self, *args, **kwargs)
        transport.set_write_buffer_limits(0)
        return transport, protocol

    async def create_unix_connection(self, *args, **kwargs):
        transport, protocol = await base.create_unix_connection(self, *args, **kwargs)
        transport.set_write_buffer_limits(0)
        return transport, protocol

    for f in (create_connection, create_unix_connection):
        f.__qualname__ = 'Loop.' + f.__name__
        f.__doc__ = getattr(base, f.__name__).__doc__
        setattr(loop, f.__name__, f)
    loop.run_forever = _keep_context(base.run_forever)


_PATCHES = {
    'asyncio': _patch_asyncio,
    'concurrent.futures.thread': _patch_futures_thread,
    'uvloop': _patch_uvloop,
}


def _patch(name, module):
    if name in _done:
        return
    _done.add(name)
    try:
        _PATCHES[name](module)
    except Exception as e:
        _say('the Python adapter could not patch %s (%s: %s); '
             'its callbacks are not followed' % (name, type(e).__name__, e))


class _Loader:
    """Runs the real loader, then the patch for the module it made."""

    def __init__(self, real):
        self.__dict__['_real'] = real

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        try:
            self._real.exec_module(module)
        finally:
            spec.loader = self._real
            if module.__dict__.get('__loader__') is self:
                module.__loader__ = self._real
        _patch(spec.name, module)

    def __getattr__(self, name):
        return getattr(self.__dict__['_real'], name)


class _Finder:
    """Finds the watched modules with the finders after it, to patch them once loaded."""

    def find_spec(self, name, path=None, target=None):
        if name not in _PATCHES or name in _done or name in _busy:
            return None
        _busy.add(name)
        try:
            for finder in sys.meta_path:
                find = getattr(finder, 'find_spec', None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _busy.discard(name)
        if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


_busy = set()
_finder = None


def install():
    """Patches the watched modules now or when they are imported. Idempotent."""
    global _finder
    if _finder is None:
        _finder = _Finder()
        sys.meta_path.insert(0, _finder)
    for name in _PATCHES:
        module = sys.modules.get(name)
        if module is not None:
            _patch(name, module)
