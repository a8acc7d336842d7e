'use strict';
/*
 * reqctx's Node adapter, loaded with `--require` (the preloaded library puts
 * it first in NODE_OPTIONS). It carries the C library's request context
 * across the hops Node makes in user space, which no system call names:
 * timers, immediates, nextTick, microtasks, promise continuations, libuv
 * threadpool requests (fs, dns, zlib, crypto) and requests queued in an
 * http.Agent.
 *
 * Capture, as AsyncLocalStorage does it in Node 20: an async_hooks `init`
 * hook stores a handle (reqctx.node: reqctx_handle_take) on each resource
 * that is work scheduled for later: the handle of the resource running now
 * or, where that is an I/O callback (whose resource has none), the library's
 * current context, which the read that started the callback set.
 *
 * Entering is lazy. There is no `before`/`after` hook, whose cost on every
 * promise is most of what such an adapter costs; the handle of the running
 * resource is entered only where the library will look at the thread's
 * context:
 *   - before a write made from JavaScript: fs.writeSync and the other sync
 *     writes (console and process.stdout/stderr use them for files), a
 *     write on a net.Socket (sockets, pipes, TTYs, TLS, outbound HTTP), a
 *     UDP send;
 *   - at `init` of every native resource: libuv is about to queue that
 *     request or open that handle (fs and dns requests handed to the
 *     threadpool, connects, spawns, workers), and the library records the
 *     context with it.
 * An I/O callback enters nothing: the library set its request when it read.
 * If JavaScript entered another context since (an AsyncResource run inside
 * the callback), the library's own comes back (reqctx_handle_current()[1]
 * says whether the current context is one the adapter entered).
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
	const fs = require('fs');
	const take = binding.take;
	const enter = binding.enter;
	const executionAsyncResource = asyncHooks.executionAsyncResource;
	const ReflectApply = Reflect.apply;
	const H = Symbol('reqctx.handle');
	const WRAPPED = Symbol('reqctx.wrapped');

	/*
	 * cur[0] is the library's thread-local copy of the current handle and
	 * cur[1] is 1 while that is a context enter() switched to and the library
	 * has not set one itself since (reqctx_handle_current), read without a
	 * call. A value read in cur[0] is a handle once take() or enter() has
	 * returned it; `taken` is the last one take() returned. `own` is the
	 * context the library had set itself when the adapter last entered one
	 * over it. Without the view (a Node that forbids external buffers),
	 * reading either calls C.
	 */
	let cur;
	try {
		cur = new Float64Array(binding.current());
		if (cur.length !== 2)
			throw new Error('short view');
	} catch (_) {
		const state = binding.state;

		cur = { get 0() { return state(0); }, get 1() { return state(1); } };
	}
	let taken = 0;
	let own = 0;

	/* The context of an I/O callback (its resource has no handle), as a handle. */
	function io() {
		if (cur[1] !== 0)
			return own;
		const c = cur[0];

		return c === taken || c === 0 ? c : (taken = take());
	}

	/* The context JavaScript runs in here, as a handle. */
	function now() {
		const h = executionAsyncResource()[H];

		return h !== undefined ? h : io();
	}

	/* Makes handle h the library's context (h undefined: an I/O callback's own). */
	function syncTo(h) {
		if (h === undefined) {
			if (cur[1] !== 0 && own !== cur[0])
				enter(own);
		} else if (h !== cur[0]) {
			const mine = cur[1] === 0;
			const prev = enter(h);

			if (mine)
				own = prev;
		}
	}

	/*
	 * Makes the library's context the one JavaScript runs in here. Inside a
	 * wrapped write (`inside` > 0) the write has set it already, for that
	 * write: a native resource the write makes (a WriteWrap when the kernel
	 * takes only part) changes nothing.
	 */
	let inside = 0;

	function sync() {
		if (inside === 0)
			syncTo(executionAsyncResource()[H]);
	}

	/* Makes obj[name] enter the context first, once. */
	function around(obj, name) {
		const fn = obj && obj[name];

		if (typeof fn !== 'function' || fn[WRAPPED])
			return;
		const w = function () {
			sync();
			inside++;
			try {
				return ReflectApply(fn, this, arguments);
			} finally {
				inside--;
			}
		};
		Object.defineProperty(w, 'name', { value: fn.name });
		Object.defineProperty(w, 'length', { value: fn.length });
		w[WRAPPED] = true;
		obj[name] = w;
	}

	/*
	 * Sync writes. SyncWriteStream (process.stdout/stderr on a file) takes
	 * fs.writeSync when it is first loaded, which is after this file runs;
	 * if it was loaded before, its streams are wrapped themselves.
	 */
	for (const n of ['writeSync', 'writevSync', 'writeFileSync', 'appendFileSync'])
		around(fs, n);
	if ((process.moduleLoadList || []).includes('NativeModule internal/fs/sync_write_stream')) {
		for (const s of [process.stdout, process.stderr])
			if (s && typeof s._writeGeneric !== 'function')
				around(s, '_write');
	}

	/*
	 * Stream writes go through net.Socket.prototype._writeGeneric, and UDP
	 * sends through dgram's Socket.prototype.send; both write at once when
	 * they can, before any native request exists. Patched when the first
	 * handle of their kind is made (the module is loaded by then), so a
	 * program that never uses them does not load them.
	 */
	/*
	 * A chunk written to a net.Socket while an earlier write is still going
	 * out (a pipe stdout whose reader is slow) waits in the stream's buffer
	 * and goes out later from an I/O callback. process.stdout and stderr on
	 * a pipe remember the context of each such chunk on its callback, write
	 * buffered chunks one per write instead of gathering them into one
	 * writev, and the write enters each chunk's context (the library itself
	 * resumes the context of a write that the kernel left pending).
	 */
	function writeGeneric(fn) {
		const w = function () {
			const st = this._writableState;
			const cb = st && st.writecb;

			syncTo(cb && cb[H] !== undefined ? cb[H] : executionAsyncResource()[H]);
			inside++;
			try {
				return ReflectApply(fn, this, arguments);
			} finally {
				inside--;
			}
		};
		w[WRAPPED] = true;
		return w;
	}

	function tagStdio(s) {
		const st = s && s._writableState;
		const write = s && s.write;

		if (!st || typeof write !== 'function' || s.isTTY || typeof s._writeGeneric !== 'function' ||
		    typeof st.writing !== 'boolean')
			return;
		s._writev = null;
		s.write = function (chunk, encoding, cb) {
			if (!st.writing && !st.corked && st.constructed !== false)
				return ReflectApply(write, this, arguments);
			if (typeof encoding === 'function') {
				cb = encoding;
				encoding = undefined;
			}
			const user = cb;
			const tagged = function (err) {
				if (typeof user === 'function')
					return user(err);
			};
			tagged[H] = now();
			return ReflectApply(write, this, [chunk, encoding, tagged]);
		};
	}

	for (const name of ['stdout', 'stderr']) {
		const d = Object.getOwnPropertyDescriptor(process, name);

		if (!d || typeof d.get !== 'function' || !d.configurable)
			continue;
		let tagged = false;
		Object.defineProperty(process, name, {
			configurable: true,
			enumerable: d.enumerable,
			get() {
				const s = ReflectApply(d.get, this, []);

				if (!tagged) {
					tagged = true;
					tagStdio(s);
				}
				return s;
			},
			set: d.set,
		});
	}

	const later = {
		TCPWRAP: 'net', PIPEWRAP: 'net', TTYWRAP: 'net', TCPSERVERWRAP: 'net',
		PIPESERVERWRAP: 'net', UDPWRAP: 'dgram',
	};
	const done = { net: false, dgram: false };

	function patch(mod) {
		done[mod] = true;
		try {
			const p = require(mod).Socket.prototype;

			if (mod === 'dgram')
				around(p, 'send');
			else if (typeof p._writeGeneric === 'function' && !p._writeGeneric[WRAPPED])
				p._writeGeneric = writeGeneric(p._writeGeneric);
		} catch (_) { /* a Node without them: nothing to wrap */ }
	}

	/*
	 * Resource types: made in JavaScript (Timeout, Immediate, TickObject,
	 * Microtask, QueuedRequest, any AsyncResource) carry a handle; native
	 * ones enter the context at init, and those that run off the loop
	 * thread (the libuv threadpool, DNS, zlib, crypto jobs) carry a handle
	 * too. The other native ones are I/O, whose callbacks the library sets
	 * itself. The four most frequent types are tested first.
	 */
	const native = asyncHooks.asyncWrapProviders || {};
	const offLoop = /^(FSREQCALLBACK|FSREQPROMISE|GETADDRINFOREQWRAP|GETNAMEINFOREQWRAP|QUERYWRAP|ZLIB|[A-Z0-9]+REQUEST)$/;
	const CARRY = 1;
	const SYNC = 2;
	const kinds = new Map();

	function kind(type) {
		let k = kinds.get(type);

		if (k === undefined) {
			if (!Object.prototype.hasOwnProperty.call(native, type))
				k = CARRY;
			else
				k = offLoop.test(type) && type !== 'HTTPCLIENTREQUEST' ? SYNC | CARRY : SYNC;
			kinds.set(type, k);
		}
		return k;
	}

	asyncHooks.createHook({
		init(asyncId, type, triggerAsyncId, resource) {
			if (type === 'PROMISE' || type === 'TickObject' || type === 'Timeout' ||
			    type === 'Immediate') {
				const h = executionAsyncResource()[H];

				resource[H] = h !== undefined ? h : io();
				return;
			}
			const k = kind(type);

			if (k & SYNC) {
				const mod = later[type];

				if (mod !== undefined && !done[mod])
					patch(mod);
				sync();
			}
			if (k & CARRY)
				resource[H] = now();
		},
	}).enable();
})();
