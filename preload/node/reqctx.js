'use strict';
/*
 * reqctx's Node adapter, loaded with `--require` (the preloaded library puts
 * it first in NODE_OPTIONS). It carries the C library's request context
 * across the hops Node makes in user space, which no system call names:
 * timers, immediates, nextTick, microtasks, promise continuations, libuv
 * threadpool requests (fs, dns, zlib, crypto) and requests queued in an
 * http.Agent.
 *
 * The rule is the library's carrier rule, applied in Node's scheduler: when
 * such a callback is scheduled (async_hooks `init`) the current context is
 * captured as a handle (reqctx.node: reqctx_handle_take); when it runs
 * (`before`) the handle is entered, and the context that was current comes
 * back in `after`. Resources that are I/O (sockets, HTTP parsers, write and
 * connect requests) get no handle: the library itself sets the right request
 * when a connection is read, and a value held in JavaScript would be stale.
 *
 * If the binding cannot load, one line says so on stderr and Node runs as
 * without the adapter. REQCTX_RUNTIMES=0 or REQCTX_DISABLE=1 turn it off.
 */
(function reqctxAdapter() {
	const KEY = Symbol.for('reqctx.adapter');
	const env = process.env;

	if (globalThis[KEY] || env.REQCTX_RUNTIMES === '0' || env.REQCTX_DISABLE === '1')
		return;
	globalThis[KEY] = true;

	let binding;
	try {
		binding = require(require('path').join(__dirname, 'reqctx.node'));
	} catch (e) {
		const why = String((e && e.message) || e).split('\n')[0];
		try {
			require('fs').writeSync(2, 'reqctx: the Node adapter did not load (' + why +
				'); request IDs do not follow timers and promises\n');
		} catch (_) { /* stderr closed: nothing to tell */ }
		return;
	}

	const asyncHooks = require('async_hooks');
	const take = binding.take;
	const enter = binding.enter;
	const executionAsyncResource = asyncHooks.executionAsyncResource;
	const H = Symbol('reqctx.handle');
	const NONE = -1;

	/*
	 * Which resource types carry a handle. Resources made in JavaScript
	 * (Timeout, Immediate, TickObject, Microtask, QueuedRequest, and any
	 * AsyncResource a library makes) do; of the native providers, only
	 * promises and the requests that run off the loop thread (the libuv
	 * threadpool, DNS, zlib, crypto jobs). The other native providers are
	 * I/O, which the C library follows itself.
	 */
	const native = asyncHooks.asyncWrapProviders || {};
	const offLoop = /^(PROMISE|FSREQCALLBACK|FSREQPROMISE|GETADDRINFOREQWRAP|GETNAMEINFOREQWRAP|QUERYWRAP|ZLIB|[A-Z0-9]+REQUEST)$/;
	const carries = new Map();

	function carried(type) {
		let c = carries.get(type);

		if (c === undefined) {
			c = !Object.prototype.hasOwnProperty.call(native, type) ||
				(offLoop.test(type) && type !== 'HTTPCLIENTREQUEST');
			carries.set(type, c);
		}
		return c;
	}

	/*
	 * cur[0] is the library's thread-local copy of the current handle
	 * (reqctx_handle_current), read without a call. A value read there is a
	 * handle once take() or enter() has returned it; `taken` is the last one
	 * take() returned. Without the view (a Node that forbids external
	 * buffers) every capture calls take().
	 */
	let cur;
	try {
		cur = new Float64Array(binding.current());
	} catch (_) {
		cur = { 0: NaN };
	}
	let taken = 0;

	/* Contexts to restore, one per `before` whose `after` has not come yet. */
	const saved = [];
	let depth = 0;

	asyncHooks.createHook({
		init(asyncId, type, triggerAsyncId, resource) {
			if (type === 'PROMISE' || carried(type)) {
				const h = cur[0];

				resource[H] = h === taken || h === 0 ? h : (taken = take());
			}
		},
		before() {
			const h = executionAsyncResource()[H];

			saved[depth++] = h === undefined || h === cur[0] ? NONE : enter(h);
		},
		after() {
			if (depth > 0) {
				const prev = saved[--depth];

				if (prev !== NONE && prev !== cur[0])
					enter(prev);
			}
		},
	}).enable();
})();
