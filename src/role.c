#include "role.h"

#include <errno.h>

int rq_top_parse(const char *v, long *pid, int *server)
{
	long p = 0;
	int digits = 0, srv = 0;

	if (!v)
		return -EINVAL;
	for (; *v >= '0' && *v <= '9'; v++) {
		if (++digits > 10)
			return -EINVAL;
		p = p * 10 + (*v - '0');
	}
	if (!digits || p == 0)
		return -EINVAL;
	if (*v == ':') {
		if ((v[1] != '0' && v[1] != '1') || v[2])
			return -EINVAL;
		srv = v[1] == '1';
	} else if (*v) {
		return -EINVAL;
	}
	*pid = p;
	*server = srv;
	return 0;
}

void rq_role_decide(const char *top_env, long pid, int cgi, int logfds_set,
		    struct rq_role *r)
{
	long tpid;
	int tserver;
	int known = rq_top_parse(top_env, &tpid, &tserver) == 0;

	r->top = r->child = r->server = 0;
	if (cgi || (known && tpid != pid && tserver)) {
		r->child = 1;
		return;
	}
	r->top = 1;
	r->server = logfds_set || (known && tpid == pid && tserver);
}
