"""A host's own sitecustomize that fails, for tests/test_python.c: Python reports it as without reqctx."""
raise RuntimeError('the host sitecustomize failed')
