/*
 * Connections as objects: the pool they come from, the references fds hold,
 * their extension record, and the transport changes of a TLS connection
 * (src/conn.h, src/pool.h).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common.h"
#include "conn.h"
#include "ctx.h"
#include "fdtab.h"
#include "io.h"
#include "pool.h"
#include "reqctx.h"

static void setup(void)
{
	static const char *const env[] = { NULL };

	test_config(env);
	rq_fd_init();
	fake_install();
	fake_reset(0);
	rq_ctx_clear();
}

TestSuite(pool, .init = setup);
TestSuite(conn, .init = setup);

struct obj {
	int v[5];
};

RQ_POOL_DEFINE(small, struct obj, 1, 3); /* 2 per chunk, 3 at most */

Test(pool, takes_up_to_its_cap_and_reuses_what_was_given_back_last_first)
{
	uint32_t i[4];
	struct obj *o[4];

	for (int k = 0; k < 3; k++) {
		o[k] = rq_pool_take(&small, &i[k]);
		cr_assert_not_null(o[k]);
		cr_assert_eq(i[k], (uint32_t)k);
		cr_assert_eq(rq_pool_at(&small, i[k]), o[k]);
		o[k]->v[0] = 10 + k;
	}
	cr_assert_null(rq_pool_take(&small, &i[3]), "a fourth is beyond the cap");
	cr_assert_eq(rq_pool_live(&small), 3);
	rq_pool_give(&small, 0);
	rq_pool_give(&small, 2);
	cr_assert_eq(rq_pool_live(&small), 1);
	cr_assert_eq(rq_pool_take(&small, &i[3]), o[2]);
	cr_assert_eq(i[3], 2);
	cr_assert_eq(o[2]->v[0], 12, "an object holds what it held when given back");
	cr_assert_eq(rq_pool_take(&small, &i[3]), o[0]);
	cr_assert_null(rq_pool_take(&small, &i[3]));
	cr_assert_null(rq_pool_at(&small, 3));
}

static void feed(struct rq_conn *c, const char *s)
{
	struct iovec v = { (void *)s, strlen(s) };

	rq_io_conn_read(c, &v, 1, (ssize_t)strlen(s));
}

Test(conn, a_connection_given_back_comes_back_clean)
{
	struct rq_conn *c = rq_conn_new(), *d;
	uint32_t live = rq_conn_live();

	cr_assert_not_null(c);
	feed(c, "GET / HTTP/1.1\r\nX-Request-Id: old\r\n\r\nGET /half HTTP/1.1\r\nHo");
	cr_assert_str_eq(reqctx_id(), "old");
	rq_conn_unref(c);
	cr_assert_eq(rq_conn_live(), live - 1);
	d = rq_conn_new();
	cr_assert_eq(d, c, "the last one given back is taken first");
	cr_assert_eq(atomic_load(&d->refs), 1);
	rq_ctx_clear();
	rq_conn_enter(d);
	cr_assert_str_eq(reqctx_id(), "unknown", "no current request");
	feed(d, "GET / HTTP/1.1\r\nX-Request-Id: new\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), "new", "the scanner starts at a message");
	rq_conn_unref(d);
}

Test(conn, a_reference_is_refused_once_none_is_left)
{
	struct rq_conn *c = rq_conn_new();

	cr_assert_eq(rq_conn_ref(c), 0);
	rq_conn_unref(c);
	rq_conn_unref(c);
	cr_assert_eq(rq_conn_ref(c), -ENOENT, "a connection being given back gains no holder");
}

Test(conn, the_extension_record_is_mapped_only_when_asked_for)
{
	struct rq_conn *c = rq_conn_new();
	struct rq_conn_ext *x = rq_conn_ext(c, 1);

	cr_assert_not_null(x);
	cr_assert_eq(rq_conn_ext(c, 0), x);
	cr_assert_null(atomic_load(&x->proto));
	cr_assert_null(atomic_load(&x->tls));
	rq_conn_unref(c);
}

Test(conn, a_client_hello_waits_for_its_ssl_object_with_one_id)
{
	static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03rest";
	struct rq_conn *c = rq_conn_new();
	struct iovec v = { (void *)hello, sizeof(hello) - 1 };
	char first[REQCTX_ID_MAX + 1];

	rq_io_conn_read(c, &v, 1, (ssize_t)v.iov_len);
	cr_assert_eq(atomic_load(&c->xport), RQ_XP_TLS_WAIT);
	cr_assert_eq(strlen(reqctx_id()), 36, "the handshake has a generated ID: %s", reqctx_id());
	strcpy(first, reqctx_id());
	feed(c, "GET / HTTP/1.1\r\nX-Request-Id: ciphertext\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), first, "bytes on the fd are not scanned while it waits");
	rq_conn_tls_claim(c);
	cr_assert_eq(atomic_load(&c->xport), RQ_XP_TLS);
	rq_ctx_clear();
	rq_conn_enter(c);
	cr_assert_str_eq(reqctx_id(), first, "the handshake's ID stays current until a request");
	feed(c, "GET / HTTP/1.1\r\n\r\n");
	cr_assert_str_eq(reqctx_id(), first, "ciphertext on a TLS fd is left alone");
	rq_conn_feed(c, &(struct iovec){ (void *)"GET / HTTP/1.1\r\nX-Request-Id: p1\r\n\r\n", 37 },
		     1, 37);
	cr_assert_str_eq(reqctx_id(), "p1", "the plaintext is scanned from its first byte");
	rq_conn_unref(c);
}

Test(conn, http_on_a_plain_connection_is_never_taken_for_tls)
{
	struct rq_conn *c = rq_conn_new();

	feed(c, "GET / HTTP/1.1\r\nX-Request-Id: a\r\n\r\n");
	feed(c, "\x16\x03\x01");
	cr_assert_eq(atomic_load(&c->xport), RQ_XP_PLAIN, "only a connection's first byte tells");
	rq_conn_unref(c);
}
