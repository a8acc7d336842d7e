"""A host's own sitecustomize, for tests/test_python.c: reqctx's must still run it."""
import sys

sys.stderr.write('user sitecustomize ran\n')
USER_SITE = True
