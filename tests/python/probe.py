"""What the bootstrap did to this interpreter, for tests/test_python.c.

Prints one line of JSON (keys sorted): whether the asyncio adapter is in
(asyncio's base_events sees reqctx's stand-in for asyncio.events), the
sys.path entries naming an adapter directory, PYTHONPATH as children will
inherit it, the sitecustomize module Python kept, and the result of a small
asyncio.run. With --spawn, the same for a child interpreter it starts.

usage: probe.py [--spawn]
"""
import asyncio
import json
import os
import subprocess
import sys


def facts():
    site = sys.modules.get('sitecustomize')
    return {
        'adapter': asyncio.base_events.events is not asyncio.events,
        'dirs': [p for p in sys.path if p.rstrip('/').endswith('reqctx-adapters/python')],
        'pythonpath': os.environ.get('PYTHONPATH'),
        'sitecustomize': getattr(site, '__file__', None),
        'run': asyncio.run(asyncio.sleep(0, 'ran')),
    }


def main():
    out = {'self': facts()}
    if '--spawn' in sys.argv:
        child = subprocess.run([sys.executable, os.path.abspath(__file__)], check=True,
                               stdout=subprocess.PIPE, text=True)
        out['child'] = json.loads(child.stdout)['self']
    print(json.dumps(out, sort_keys=True))


if __name__ == '__main__':
    main()
