/*
 * _reqctx: the Python adapter's channel to libreqctx.so.
 *
 * A CPython extension built against the stable ABI (Py_LIMITED_API 3.11),
 * so that one build loads in every CPython from 3.11 on, whether libpython
 * is linked statically (Debian's /usr/bin/python3) or shared (pyenv). It
 * links nothing: reqctx_handle_take and reqctx_handle_enter are found in the
 * preloaded library with dlsym(RTLD_DEFAULT), and `preloaded` says whether
 * they were. Three public functions of CPython that the 3.11 limited API
 * lacks (PyContextVar_Get, PyContextVar_Set, PyObject_Vectorcall; the last
 * is in it from 3.12 on) are found the same way, and used only if found.
 *
 * Its one job is the carrier rule inside the event loop: a callback wrapped
 * here captures the thread's C context when it is scheduled, runs in it,
 * then puts back the context it interrupted. All of that happens in C, so
 * that a hop costs no Python frame.
 *
 * Scheduled callbacks (schedule(), and the Wrap factories the asyncio
 * module installs for the loop's Handle and TimerHandle) follow the request
 * as AsyncLocalStorage follows an async function. Which context a callback
 * runs in depends on where it was scheduled from:
 *   - outside any wrapped callback: from an I/O callback, which the C
 *     library has already put in the request its fd names, or before the
 *     loop runs. The callback runs in the context captured then, and if it
 *     was scheduled for a task's Context, the task moves to that request.
 *   - inside a wrapped callback, for the Context that callback runs in (a
 *     task scheduling its own next step) or for a fresh copy of it (a plain
 *     call_soon, call_later or call_at): the context captured then.
 *   - inside a wrapped callback, for another Context (a task woken by a
 *     future that another task or callback resolved): the context that
 *     Context last ran in, if it has run, else the captured one. A task
 *     woken by another request (a lock released, a pooled connection freed,
 *     an executor job done) so stays in its own request.
 * The handle a Context last ran in is kept in a ContextVar (`var`), which a
 * task's Context copies from its creator.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

typedef unsigned long long rq_handle;

/* How a wrapped callback picks its context (see the top of the file). */
enum mode {
	M_BIND,  /* the captured one, always (bind(): executor jobs) */
	M_HERE,  /* scheduled in a wrapped callback for its own Context: the captured one */
	M_IO,    /* scheduled outside any wrapped callback: the captured one, recorded */
	M_AWAIT, /* scheduled in one for another Context: that one's last, else the captured */
};

/* A vectorcall function (PEP 590), as CPython 3.8 and later call it. */
typedef PyObject *(*rq_vectorcall)(PyObject *callable, PyObject *const *args, size_t nargsf,
				   PyObject *kwnames);

typedef struct {
	PyObject_HEAD
	rq_vectorcall vc; /* bound_vc, when the interpreter's vectorcall is used */
	PyObject *fn;
	PyObject *ctx;    /* the contextvars.Context it was scheduled for, or NULL */
	rq_handle h;      /* the context captured when it was made */
	int mode;
} bound;

static rq_handle (*take)(void);
static rq_handle (*enter)(rq_handle);

/* This thread's wrapped callbacks (one TLS block, found once per function). */
struct run {
	int depth;         /* wrapped callbacks running (nested runs count each) */
	PyObject *running; /* the Context the innermost one was scheduled for */
};

static __thread struct run tls;

static PyObject *bound_type, *wrap_type;

/*
 * Freed Bound objects kept for reuse (every hop makes one and drops one).
 * Only touched with the GIL held; each keeps its reference to the type.
 */
#define FREE_MAX 64
static bound *freelist[FREE_MAX];
static int nfree;
static PyObject *var;           /* ContextVar: the handle its Context last ran in */
static PyObject *var_get;       /* var.get */
static PyObject *var_set;       /* var.set */
static PyObject *none_args;     /* (None,) */

/*
 * PyContextVar_Get and PyContextVar_Set, when the interpreter exports them
 * (every CPython since 3.7 does). They are public but not in the limited
 * API, so they are found at run time; without them var.get and var.set
 * are called, which costs about 100 instructions more where they are used.
 */
static int (*cv_get)(PyObject *var, PyObject *dflt, PyObject **value);
static PyObject *(*cv_set)(PyObject *var, PyObject *value);

/*
 * PyObject_Vectorcall, likewise (public since 3.8, in the limited API from
 * 3.12 on, with the same ABI). When it is there, Bound, Wrap and Method are
 * called the vectorcall way (RQ_TPFLAGS_VECTORCALL, PEP 590): a hop then
 * builds no argument tuple or keyword dict of its own.
 */
static PyObject *(*vcall)(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);

#define RQ_TPFLAGS_VECTORCALL (1UL << 11) /* Py_TPFLAGS_HAVE_VECTORCALL */
#define RQ_VC_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1)) /* PY_VECTORCALL_ARGUMENTS_OFFSET */
/* Most arguments (positional and keyword) a Wrap or Method passes on without a tuple. */
#define RQ_VC_ARGS 16

static PyObject *bound_vc(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames);

/*
 * fn wrapped to run in the current context: as a callback scheduled for
 * Context ctx (NULL or None: a fresh copy of the current one) if sched,
 * else as bound. A callback that is already wrapped keeps its capture, so
 * a scheduler that calls another (uvloop's call_at calls call_later) wraps
 * once.
 */
static PyObject *bound_make(PyObject *fn, int sched, PyObject *ctx)
{
	bound *b;

	struct run *t;

	if ((PyObject *)Py_TYPE(fn) == bound_type) {
		Py_INCREF(fn);
		return fn;
	}
	if (nfree > 0) {
		b = freelist[--nfree];
		Py_SET_REFCNT((PyObject *)b, 1);
	} else if (!(b = PyObject_GC_New(bound, (PyTypeObject *)bound_type))) {
		return NULL;
	}
	if (ctx == Py_None || !sched)
		ctx = NULL;
	b->vc = vcall ? bound_vc : NULL;
	Py_INCREF(fn);
	Py_XINCREF(ctx);
	b->fn = fn;
	b->ctx = ctx;
	b->h = take();
	t = &tls;
	if (!sched)
		b->mode = M_BIND;
	else if (!t->depth)
		b->mode = M_IO;
	else
		b->mode = !ctx || ctx == t->running ? M_HERE : M_AWAIT;
	PyObject_GC_Track((PyObject *)b);
	return (PyObject *)b;
}

/* The running Context's value of var (a new reference), or NULL if it has none. */
static PyObject *var_load(void)
{
	PyObject *v = NULL;

	if (cv_get) {
		if (cv_get(var, NULL, &v) < 0)
			v = NULL;
	} else if ((v = PyObject_Call(var_get, none_args, NULL)) == Py_None) {
		Py_CLEAR(v);
	}
	if (!v)
		PyErr_Clear();
	return v;
}

/* Records h as the handle the running Context last ran in. */
static void var_store(rq_handle h)
{
	PyObject *n = PyLong_FromUnsignedLongLong(h), *tok = NULL;

	if (n)
		tok = cv_set ? cv_set(var, n) : PyObject_CallFunctionObjArgs(var_set, n, NULL);
	Py_XDECREF(tok);
	Py_XDECREF(n);
	if (!tok)
		PyErr_Clear();
}

/*
 * The handle an M_IO or M_AWAIT callback runs in, recorded in the Context
 * it runs in (its own). Any trouble leaves the captured handle and no
 * exception.
 */
static rq_handle pick(const bound *b)
{
	PyObject *v = var_load();
	rq_handle h = b->h, last = 0;
	int known = 0;

	if (v) {
		last = PyLong_AsUnsignedLongLong(v);
		if (PyErr_Occurred())
			PyErr_Clear();
		else
			known = 1;
		Py_DECREF(v);
	}
	if (b->mode == M_AWAIT && known)
		h = last;
	if (!known || last != h)
		var_store(h);
	return h;
}

/*
 * Runs the callback in its context, then puts back the one it interrupted:
 * an I/O callback that runs later in the same loop iteration must start in
 * the request the library set for its fd (not all of them do I/O on it
 * before they schedule: a connect's completion does not).
 */
static PyObject *bound_run(bound *b, PyObject *args, PyObject *kw, PyObject *const *vargs, size_t nargsf,
			   PyObject *kwnames)
{
	struct run *t;
	PyObject *outer, *r;
	rq_handle prev;

	prev = enter(b->ctx && b->mode != M_HERE ? pick(b) : b->h);
	t = &tls;
	outer = t->running;
	t->depth++;
	t->running = b->ctx;
	r = args ? PyObject_Call(b->fn, args, kw) : vcall(b->fn, vargs, nargsf, kwnames);
	t->running = outer;
	t->depth--;
	enter(prev);
	return r;
}

static PyObject *bound_call(PyObject *self, PyObject *args, PyObject *kw)
{
	return bound_run((bound *)self, args, kw, NULL, 0, NULL);
}

static PyObject *bound_vc(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	return bound_run((bound *)self, NULL, NULL, args, nargsf, kwnames);
}

static int bound_traverse(PyObject *self, visitproc visit, void *arg)
{
	Py_VISIT(Py_TYPE(self));
	Py_VISIT(((bound *)self)->fn);
	Py_VISIT(((bound *)self)->ctx);
	return 0;
}

static int bound_clear(PyObject *self)
{
	Py_CLEAR(((bound *)self)->fn);
	Py_CLEAR(((bound *)self)->ctx);
	return 0;
}

static void bound_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	PyObject_GC_UnTrack(self);
	bound_clear(self);
	if (nfree < FREE_MAX) {
		freelist[nfree++] = (bound *)self;
		return;
	}
	PyObject_GC_Del(self);
	Py_DECREF(tp);
}

/* A wrapped callback prints as the callback it wraps (asyncio's debug messages). */
static PyObject *bound_repr(PyObject *self)
{
	PyObject *fn = ((bound *)self)->fn;

	return fn ? PyObject_Repr(fn) : PyUnicode_FromString("<reqctx bound>");
}

static PyObject *bound_qualname(PyObject *self, void *closure)
{
	PyObject *fn = ((bound *)self)->fn;

	(void)closure;
	if (!fn) {
		PyErr_SetString(PyExc_AttributeError, "__qualname__");
		return NULL;
	}
	return PyObject_GetAttrString(fn, "__qualname__");
}

static PyObject *bound_handle(PyObject *self, void *closure)
{
	(void)closure;
	return PyLong_FromUnsignedLongLong(((bound *)self)->h);
}

/* The last entry but one, __vectorcalloffset__, is cut off unless vcall is there. */
static PyMemberDef bound_members[] = {
	{ "__wrapped__", T_OBJECT, offsetof(bound, fn), READONLY, NULL },
	{ "__vectorcalloffset__", T_PYSSIZET, offsetof(bound, vc), READONLY, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static PyGetSetDef bound_getset[] = {
	{ "__qualname__", bound_qualname, NULL, NULL, NULL },
	{ "handle", bound_handle, NULL, "the captured handle", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot bound_slots[] = {
	{ Py_tp_call, bound_call },
	{ Py_tp_traverse, bound_traverse },
	{ Py_tp_clear, bound_clear },
	{ Py_tp_dealloc, bound_dealloc },
	{ Py_tp_repr, bound_repr },
	{ Py_tp_members, bound_members },
	{ Py_tp_getset, bound_getset },
	{ 0, NULL },
};

static PyType_Spec bound_spec = {
	"_reqctx.Bound", sizeof(bound), 0,
	Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION, bound_slots,
};

/*
 * Wrap(fn, pos, ctx)(*args, **kwargs): fn(*args, **kwargs) with args[pos],
 * a callback, wrapped as one scheduled for a Context that is args[ctx] if
 * ctx is an int, kwargs[ctx] if it is a str, and a fresh copy of the
 * current one if it is None or that argument is not given.
 *
 * Wrap(asyncio.events.Handle, 0, 3) stands in for Handle where the stock
 * loops schedule callbacks (Handle(callback, args, loop, context)), so that
 * the handle a loop makes is still a plain Handle. Method is the same as a
 * method: uvloop.Loop.call_soon = Method(uvloop.loop.Loop.call_soon, 1,
 * "context") binds like a function, with no Python frame of its own.
 */
typedef struct {
	PyObject_HEAD
	rq_vectorcall vc; /* wrap_vc, when the interpreter's vectorcall is used */
	PyObject *fn;
	PyObject *ctx;  /* None, or the keyword naming the Context */
	Py_ssize_t pos; /* index of the callback in the arguments */
	Py_ssize_t cpos; /* index of the Context, or -1 */
	PyObject *self;  /* Method: the instance it was last bound to, and the bound method */
	PyObject *bound;
} wrap;

static PyObject *method_type, *method_new; /* Method; types.MethodType */

static PyObject *wrap_call(PyObject *self, PyObject *args, PyObject *kw)
{
	wrap *w = (wrap *)self;
	Py_ssize_t n = PyTuple_Size(args);
	PyObject *a = args, *cb, *ctx = NULL, *r;

	if (n <= w->pos)
		return PyObject_Call(w->fn, args, kw);
	if (w->cpos >= 0 && w->cpos < n)
		ctx = PyTuple_GetItem(args, w->cpos);
	else if (w->ctx != Py_None && kw)
		ctx = PyDict_GetItemWithError(kw, w->ctx);
	if (!ctx && PyErr_Occurred())
		return NULL;
	if (!(cb = bound_make(PyTuple_GetItem(args, w->pos), 1, ctx)))
		return NULL;
	/* A tuple that only the caller holds (the interpreter's) is changed in place. */
	if (Py_REFCNT(args) != 1) {
		if (!(a = PyTuple_New(n))) {
			Py_DECREF(cb);
			return NULL;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			PyObject *v = PyTuple_GetItem(args, i);

			Py_INCREF(v);
			PyTuple_SetItem(a, i, v);
		}
	}
	PyTuple_SetItem(a, w->pos, cb);
	r = PyObject_Call(w->fn, a, kw);
	if (a != args)
		Py_DECREF(a);
	return r;
}

/* wrap_call, called the vectorcall way: the arguments are passed on as they came. */
static PyObject *wrap_vc(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	wrap *w = (wrap *)self;
	Py_ssize_t n = (Py_ssize_t)(nargsf & ~RQ_VC_OFFSET), nk = kwnames ? PyTuple_Size(kwnames) : 0;
	PyObject *stack[1 + RQ_VC_ARGS], *ctx = NULL, *cb, *r;

	if (n <= w->pos || n + nk > RQ_VC_ARGS) {
		PyObject *a = PyTuple_New(n), *kw = nk ? PyDict_New() : NULL;

		for (Py_ssize_t i = 0; a && i < n; i++) {
			Py_INCREF(args[i]);
			PyTuple_SetItem(a, i, args[i]);
		}
		for (Py_ssize_t i = 0; kw && i < nk; i++)
			if (PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[n + i]) < 0)
				Py_CLEAR(kw);
		r = a && (kw || !nk) ? wrap_call(self, a, kw) : NULL;
		Py_XDECREF(a);
		Py_XDECREF(kw);
		return r;
	}
	if (w->cpos >= 0 && w->cpos < n) {
		ctx = args[w->cpos];
	} else if (w->ctx != Py_None) {
		for (Py_ssize_t i = 0; i < nk && !ctx; i++) {
			PyObject *k = PyTuple_GetItem(kwnames, i);

			if (k == w->ctx || PyUnicode_Compare(k, w->ctx) == 0)
				ctx = args[n + i];
		}
		if (PyErr_Occurred())
			return NULL;
	}
	if (!(cb = bound_make(args[w->pos], 1, ctx)))
		return NULL;
	memcpy(stack + 1, args, (size_t)(n + nk) * sizeof(*stack));
	stack[1 + w->pos] = cb;
	r = vcall(w->fn, stack + 1, (size_t)n | RQ_VC_OFFSET, kwnames);
	Py_DECREF(cb);
	return r;
}

static PyObject *wrap_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	PyObject *fn, *ctx = Py_None;
	Py_ssize_t pos, cpos = -1;
	wrap *w;

	if (kw && PyDict_Size(kw)) {
		PyErr_SetString(PyExc_TypeError, "Wrap takes no keyword arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(args, "On|O:Wrap", &fn, &pos, &ctx))
		return NULL;
	if (PyLong_Check(ctx)) {
		cpos = PyLong_AsSsize_t(ctx);
		ctx = Py_None;
	}
	if (!PyCallable_Check(fn) || pos < 0 || PyErr_Occurred() ||
	    (ctx != Py_None && !PyUnicode_Check(ctx))) {
		PyErr_Clear();
		PyErr_SetString(PyExc_TypeError, "Wrap(fn, pos, ctx): fn callable, pos >= 0, ctx an int, str or None");
		return NULL;
	}
	if (!take) {
		PyErr_SetString(PyExc_RuntimeError, "libreqctx.so is not preloaded");
		return NULL;
	}
	if (!(w = (wrap *)PyType_GenericNew(tp, NULL, NULL)))
		return NULL;
	Py_INCREF(fn);
	Py_INCREF(ctx);
	w->vc = vcall ? wrap_vc : NULL;
	w->fn = fn;
	w->ctx = ctx;
	w->pos = pos;
	w->cpos = cpos;
	return (PyObject *)w;
}

static void wrap_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);
	freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	Py_CLEAR(((wrap *)self)->fn);
	Py_CLEAR(((wrap *)self)->ctx);
	Py_CLEAR(((wrap *)self)->self);
	Py_CLEAR(((wrap *)self)->bound);
	f(self);
	Py_DECREF(tp);
}

static PyObject *wrap_repr(PyObject *self)
{
	return PyUnicode_FromFormat("<reqctx-wrapped %R>", ((wrap *)self)->fn);
}

/*
 * Method: bound to an instance like a function (on its class, itself).
 * asyncio's C Task looks loop.call_soon up for every step, so the method
 * bound to the last instance is kept (with it, that instance: an event loop,
 * until the next loop binds it).
 */
static PyObject *method_get(PyObject *self, PyObject *obj, PyObject *type)
{
	wrap *w = (wrap *)self;
	PyObject *m;

	(void)type;
	if (!obj || obj == Py_None) {
		Py_INCREF(self);
		return self;
	}
	if (obj != w->self || !w->bound) {
		PyObject *old_self = w->self, *old_bound = w->bound;

		if (!(m = PyObject_CallFunctionObjArgs(method_new, self, obj, NULL)))
			return NULL;
		Py_INCREF(obj);
		w->self = obj;
		w->bound = m;
		Py_XDECREF(old_self);
		Py_XDECREF(old_bound);
	}
	Py_INCREF(w->bound);
	return w->bound;
}

static PyObject *wrap_getattr(PyObject *self, PyObject *name)
{
	static const char *const own[] = { "fn", "__wrapped__", "__class__", NULL };

	for (int i = 0; own[i]; i++)
		if (PyUnicode_CompareWithASCIIString(name, own[i]) == 0)
			return PyObject_GenericGetAttr(self, name);
	/* __name__, __doc__, __qualname__ ... are the wrapped function's. */
	return PyObject_GetAttr(((wrap *)self)->fn, name);
}

/* The last entry but one, __vectorcalloffset__, is cut off unless vcall is there. */
static PyMemberDef wrap_members[] = {
	{ "fn", T_OBJECT, offsetof(wrap, fn), READONLY, NULL },
	{ "__wrapped__", T_OBJECT, offsetof(wrap, fn), READONLY, NULL },
	{ "__vectorcalloffset__", T_PYSSIZET, offsetof(wrap, vc), READONLY, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static PyType_Slot wrap_slots[] = {
	{ Py_tp_call, wrap_call },
	{ Py_tp_new, wrap_new },
	{ Py_tp_dealloc, wrap_dealloc },
	{ Py_tp_repr, wrap_repr },
	{ Py_tp_members, wrap_members },
	{ 0, NULL },
};

static PyType_Spec wrap_spec = {
	"_reqctx.Wrap", sizeof(wrap), 0, Py_TPFLAGS_DEFAULT, wrap_slots,
};

static PyType_Slot method_slots[] = {
	{ Py_tp_call, wrap_call },
	{ Py_tp_new, wrap_new },
	{ Py_tp_dealloc, wrap_dealloc },
	{ Py_tp_repr, wrap_repr },
	{ Py_tp_members, wrap_members },
	{ Py_tp_descr_get, method_get },
	{ Py_tp_getattro, wrap_getattr },
	{ 0, NULL },
};

static PyType_Spec method_spec = {
	"_reqctx.Method", sizeof(wrap), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR, method_slots,
};

/* ---- module functions ----------------------------------------------------- */

static int need_lib(void)
{
	if (take)
		return 0;
	PyErr_SetString(PyExc_RuntimeError, "libreqctx.so is not preloaded");
	return -1;
}

static PyObject *m_take(PyObject *m, PyObject *unused)
{
	(void)m, (void)unused;
	return need_lib() ? NULL : PyLong_FromUnsignedLongLong(take());
}

static PyObject *m_enter(PyObject *m, PyObject *arg)
{
	rq_handle h = PyLong_AsUnsignedLongLong(arg);

	(void)m;
	if (PyErr_Occurred() || need_lib())
		return NULL;
	return PyLong_FromUnsignedLongLong(enter(h));
}

static PyObject *m_bind(PyObject *m, PyObject *fn)
{
	(void)m;
	if (need_lib())
		return NULL;
	return bound_make(fn, 0, NULL);
}

static PyObject *m_schedule(PyObject *m, PyObject *args)
{
	PyObject *fn, *ctx = NULL;

	(void)m;
	if (!PyArg_ParseTuple(args, "O|O:schedule", &fn, &ctx) || need_lib())
		return NULL;
	return bound_make(fn, 1, ctx);
}

static PyMethodDef methods[] = {
	{ "take", m_take, METH_NOARGS, "take() -> the calling thread's context as a handle (0: unknown)" },
	{ "enter", m_enter, METH_O, "enter(h) -> enters handle h; returns the handle it replaced" },
	{ "bind", m_bind, METH_O, "bind(fn) -> fn bound to the current context, wherever it is called" },
	{ "schedule", m_schedule, METH_VARARGS,
	  "schedule(fn, context=None) -> fn wrapped as a callback a loop schedules for context" },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_reqctx", "reqctx's channel to libreqctx.so (see _reqctx_asyncio)",
	-1, methods, NULL, NULL, NULL, NULL,
};

static int setup(PyObject *m)
{
	PyObject *cv;

	cv_get = (int (*)(PyObject *, PyObject *, PyObject **))dlsym(RTLD_DEFAULT, "PyContextVar_Get");
	cv_set = (PyObject * (*)(PyObject *, PyObject *))dlsym(RTLD_DEFAULT, "PyContextVar_Set");
	if (!cv_get || !cv_set)
		cv_get = NULL, cv_set = NULL;
	vcall = (PyObject * (*)(PyObject *, PyObject *const *, size_t, PyObject *))
		dlsym(RTLD_DEFAULT, "PyObject_Vectorcall");
	if (vcall) {
		bound_spec.flags |= RQ_TPFLAGS_VECTORCALL;
		wrap_spec.flags |= RQ_TPFLAGS_VECTORCALL;
		method_spec.flags |= RQ_TPFLAGS_VECTORCALL;
	} else {
		memset(&bound_members[1], 0, sizeof(bound_members[1]));
		memset(&wrap_members[2], 0, sizeof(wrap_members[2]));
	}
	take = (rq_handle (*)(void))dlsym(RTLD_DEFAULT, "reqctx_handle_take");
	enter = (rq_handle (*)(rq_handle))dlsym(RTLD_DEFAULT, "reqctx_handle_enter");
	if (!take || !enter)
		take = NULL, enter = NULL;
	if (PyModule_AddObject(m, "preloaded", PyBool_FromLong(take != NULL)) < 0)
		return -1;
	if (!(bound_type = PyType_FromSpec(&bound_spec)) || !(wrap_type = PyType_FromSpec(&wrap_spec)) ||
	    !(method_type = PyType_FromSpec(&method_spec)))
		return -1;
	Py_INCREF(bound_type);
	Py_INCREF(wrap_type);
	Py_INCREF(method_type);
	if (PyModule_AddObject(m, "Bound", bound_type) < 0 || PyModule_AddObject(m, "Wrap", wrap_type) < 0 ||
	    PyModule_AddObject(m, "Method", method_type) < 0)
		return -1;
	if (!(cv = PyImport_ImportModule("types")))
		return -1;
	method_new = PyObject_GetAttrString(cv, "MethodType");
	Py_DECREF(cv);
	if (!method_new || !(cv = PyImport_ImportModule("contextvars")))
		return -1;
	var = PyObject_CallMethod(cv, "ContextVar", "s", "reqctx_handle");
	Py_DECREF(cv);
	if (!var || !(var_get = PyObject_GetAttrString(var, "get")) ||
	    !(var_set = PyObject_GetAttrString(var, "set")) || !(none_args = PyTuple_Pack(1, Py_None)))
		return -1;
	Py_INCREF(var);
	return PyModule_AddObject(m, "var", var);
}

PyMODINIT_FUNC PyInit__reqctx(void);

PyMODINIT_FUNC PyInit__reqctx(void)
{
	PyObject *m = PyModule_Create(&module);

	if (m && setup(m) < 0)
		Py_CLEAR(m);
	return m;
}
