'use strict';
// For tools/bench/node.sh: an async_hooks hook whose init does nothing, loaded
// with --require. What it costs is Node's own async_hooks machinery (promise
// hooks, async ids, the init dispatch), which every adapter built on
// async_hooks, and AsyncLocalStorage in Node 18 and 20, pays first.
require('async_hooks').createHook({ init() {} }).enable();
