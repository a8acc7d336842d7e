/*
 * reqctx.node: the Node-API binding of the Node adapter (reqctx.js).
 *
 * Functions over the preloaded library's handle ABI (include/reqctx.h):
 *   take()    -> the current context's handle, a Number (0: unknown)
 *   enter(h)  -> enters h, returns the handle that was current before
 *   current() -> a view of the thread's current handle (below)
 * They are resolved with dlsym(RTLD_DEFAULT) when the module loads, so the
 * binding works only in a process that has libreqctx.so preloaded (or
 * linked); elsewhere it fails to load with a message saying so. The napi_*
 * functions come from the node executable. Node-API version 8: the same
 * file loads in Node 18 and 20 without a rebuild.
 */
#define NAPI_VERSION 8
#include <dlfcn.h>
#include <node_api.h>

#define HANDLE_LIMIT 9007199254740992.0 /* 2^53: handles are below it */

static unsigned long long (*take)(void);
static unsigned long long (*enter)(unsigned long long);
static const volatile double *(*current)(void);

static napi_value js_take(napi_env env, napi_callback_info info)
{
	napi_value v;

	(void)info;
	if (napi_create_double(env, (double)take(), &v) != napi_ok)
		return NULL;
	return v;
}

static napi_value js_enter(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value arg, v;
	double h = 0;

	if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_double(env, arg, &h) != napi_ok || !(h >= 0 && h < HANDLE_LIMIT))
		h = 0; /* anything but a handle enters "unknown" */
	if (napi_create_double(env, (double)enter((unsigned long long)h), &v) != napi_ok)
		return NULL;
	return v;
}

/*
 * current() -> an ArrayBuffer over the library's two thread-local doubles
 * (reqctx_handle_current): the current handle, and 1 while it is one that
 * enter() switched to and the library has not set one itself since. Read
 * from JavaScript through a Float64Array without a call; undefined where
 * Node forbids external buffers.
 */
static napi_value js_current(napi_env env, napi_callback_info info)
{
	napi_value v;

	(void)info;
	if (napi_create_external_arraybuffer(env, (void *)current(), 2 * sizeof(double), NULL, NULL,
					     &v) != napi_ok) {
		napi_get_undefined(env, &v);
	}
	return v;
}

/* state(i) -> what current()'s view holds at index i (0 or 1), for a Node without that view. */
static napi_value js_state(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value arg, v;
	int32_t i = 0;

	if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_int32(env, arg, &i) != napi_ok || i < 0 || i > 1)
		i = 0;
	if (napi_create_double(env, current()[i], &v) != napi_ok)
		return NULL;
	return v;
}

NAPI_MODULE_INIT()
{
	napi_property_descriptor props[] = {
		{ "take", NULL, js_take, NULL, NULL, NULL, napi_default, NULL },
		{ "enter", NULL, js_enter, NULL, NULL, NULL, napi_default, NULL },
		{ "current", NULL, js_current, NULL, NULL, NULL, napi_default, NULL },
		{ "state", NULL, js_state, NULL, NULL, NULL, napi_default, NULL },
	};

	take = (unsigned long long (*)(void))dlsym(RTLD_DEFAULT, "reqctx_handle_take");
	enter = (unsigned long long (*)(unsigned long long))dlsym(RTLD_DEFAULT, "reqctx_handle_enter");
	current = (const volatile double *(*)(void))dlsym(RTLD_DEFAULT, "reqctx_handle_current");
	if (!take || !enter || !current) {
		napi_throw_error(env, "REQCTX_NOT_PRELOADED",
				 "libreqctx.so is not loaded in this process (LD_PRELOAD)");
		return NULL;
	}
	if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok)
		return NULL;
	return exports;
}
