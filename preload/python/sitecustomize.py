"""reqctx's bootstrap for Python hosts.

libreqctx.so puts the directory holding this file at the front of
PYTHONPATH when it is preloaded into a Python interpreter, so that Python
imports this sitecustomize at start-up. Like ddtrace-run and
opentelemetry-instrument, it then steps aside: it takes its directory off
sys.path and itself out of sys.modules, imports the sitecustomize the host
would have imported without reqctx (if there is one), and puts its directory
back where it was. It also takes its directory off the PYTHONPATH that
children inherit, leaving the host's own value: a child that is preloaded
gets it again from the library, once.

Then it installs the asyncio adapter (_reqctx_asyncio) if libreqctx.so is
preloaded (its reqctx_handle_* functions are found) and neither
REQCTX_RUNTIMES=0 nor REQCTX_DISABLE=1 is set. An adapter that cannot load
says so in one line on stderr, and the host runs as it would without it.

This file must stay importable by any Python, 2.7 included: hosts that the
adapter does not support get the one line, and their own sitecustomize.
"""
import os
import sys


def _same(entry, here):
    try:
        return bool(entry) and os.path.abspath(entry) == here
    except Exception:
        return False


def _env_drop(here):
    """Takes the first PYTHONPATH entry that names `here` out of os.environ."""
    value = os.environ.get('PYTHONPATH')
    if value is None:
        return
    parts = value.split(os.pathsep)
    for i, p in enumerate(parts):
        if _same(p, here):
            del parts[i]
            if any(parts):
                os.environ['PYTHONPATH'] = os.pathsep.join(parts)
            else:
                del os.environ['PYTHONPATH']
            return


def _chain(here):
    """Imports the host's own sitecustomize, if any; returns what it raised, or None."""
    mine = sys.modules.pop('sitecustomize', None)
    at = [i for i, p in enumerate(sys.path) if _same(p, here)]
    for i in reversed(at):
        del sys.path[i]
    err = None
    try:
        import sitecustomize  # noqa: F401  (the host's own)
    except ImportError as e:
        if getattr(e, 'name', None) != 'sitecustomize':
            err = e
    except Exception as e:
        err = e
    if at:
        sys.path.insert(min(at[0], len(sys.path)), here)
    if 'sitecustomize' not in sys.modules and mine is not None:
        sys.modules['sitecustomize'] = mine
    return err


def _say(what, e=None):
    if e is not None:
        what = '%s (%s: %s)' % (what, type(e).__name__, e)
    sys.stderr.write('reqctx: %s; asyncio callbacks are not followed\n' % what)


def _install():
    env = os.environ
    if env.get('REQCTX_RUNTIMES') == '0' or env.get('REQCTX_DISABLE') == '1':
        return
    impl = getattr(sys, 'implementation', None)
    name = impl.name if impl is not None else 'python'
    if name != 'cpython' or sys.version_info < (3, 11):
        _say('the Python adapter needs CPython 3.11 or later, not %s %s'
             % (name, '.'.join(map(str, sys.version_info[:3]))))
        return
    try:
        import _reqctx
    except Exception as e:
        _say('the Python adapter cannot load', e)
        return
    if not _reqctx.preloaded:
        return
    try:
        import _reqctx_asyncio
        _reqctx_asyncio.install()
    except Exception as e:
        _say('the Python adapter cannot load', e)


def _main():
    here = os.path.dirname(os.path.abspath(__file__))
    _env_drop(here)
    err = _chain(here)
    try:
        _install()
    except Exception:
        pass
    if err is not None:
        raise err  # site.py reports it as it would have without reqctx


_main()
