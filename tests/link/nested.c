/*
 * Linked with -lreqctx (not preloaded), for test_crash's linked suite: nested
 * reqctx_run calls, each printing the ID it sees. Built by the test itself
 * with $(pkg-config --cflags --libs reqctx) against an installed prefix.
 */
#include <errno.h>
#include <stdio.h>

#include <reqctx.h>

static void inner(void *arg)
{
	(void)arg;
	printf("inner %s\n", reqctx_id());
}

static void outer(void *arg)
{
	(void)arg;
	printf("outer %s\n", reqctx_id());
	if (reqctx_run("in-1", inner, NULL) != 0)
		printf("inner run failed\n");
	printf("back %s\n", reqctx_id());
}

int main(void)
{
	printf("start %s\n", reqctx_id());
	if (reqctx_run("out-1", outer, NULL) != 0)
		printf("outer run failed\n");
	printf("bad id %s\n", reqctx_run("bad id", outer, NULL) == -EINVAL ? "refused" : "ran");
	printf("end %s\n", reqctx_id());
	return 0;
}
