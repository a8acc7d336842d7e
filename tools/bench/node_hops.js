'use strict';
// Per-hop cost for tools/bench/node.sh. Kinds of hop:
//   await      N awaits of a resolved value
//   nexttick   a chain of N process.nextTick callbacks
//   immediate  a chain of N setImmediate callbacks (one loop iteration each)
//   timeout0   N setTimeout(fn, 0) callbacks, armed 1000 at a time
//   chain      N .then() callbacks on one promise chain, 1000 links at a time
//
// usage: node node_hops.js time N ROUNDS [KIND...]
//   prints "KIND NS" per kind: CPU time (user + system) per hop in ns, the
//   best of ROUNDS runs (N/10 hops for immediate and timeout0). CPU time
//   leaves out the 1 ms each batch of timeouts waits, and the time the
//   process spends descheduled on a busy machine.
// usage: node node_hops.js mark N [KIND...]
//   for callgrind (--zero-before=uv_os_getpriority --dump-before=uv_os_gethostname):
//   per kind, runs N hops to warm up, calls os.getPriority(), runs N hops,
//   calls os.hostname(); each dump then holds exactly N hops of that kind.
//   Prints the kinds in dump order.
const os = require('os');

const [mode, nArg, ...rest] = process.argv.slice(2);
const N = Number(nArg || 1000000);
const ROUNDS = mode === 'time' ? Number(rest.shift() || 5) : 1;
const WARM = Number(process.env.HOPS_WARM || 3);
const ALL = ['await', 'nexttick', 'immediate', 'timeout0', 'chain'];
const kinds = rest.length ? rest : ALL;

async function awaits(n) {
	for (let i = 0; i < n; i++)
		await null;
}

function hops(n, schedule) {
	return new Promise((resolve) => {
		let i = 0;
		const step = () => (++i < n ? schedule(step) : resolve());
		schedule(step);
	});
}

async function timeouts(n) {
	for (let done = 0; done < n; done += 1000) {
		await new Promise((resolve) => {
			let left = 1000;
			const fire = () => --left === 0 && resolve();
			for (let i = 0; i < 1000; i++)
				setTimeout(fire, 0);
		});
	}
}

const link = (v) => v;

async function chains(n) {
	for (let done = 0; done < n; done += 1000) {
		let p = Promise.resolve(0);
		for (let i = 0; i < 1000; i++)
			p = p.then(link);
		await p;
	}
}

const run = {
	await: awaits,
	nexttick: (n) => hops(n, process.nextTick),
	immediate: (n) => hops(n, setImmediate),
	timeout0: timeouts,
	chain: chains,
};
const slow = { immediate: 10, timeout0: 10 };

(async () => {
	for (const k of kinds) {
		const fn = run[k];
		const n = mode === 'time' ? Math.max(1000, N / (slow[k] || 1)) : N;

		if (!fn)
			throw new Error('unknown kind ' + k);
		if (mode === 'mark') {
			for (let w = 0; w < WARM; w++)
				await fn(n);
			os.getPriority();
			await fn(n);
			os.hostname();
			console.log(k);
			continue;
		}
		let min = Infinity;
		for (let r = 0; r < ROUNDS; r++) {
			const t = process.cpuUsage();
			await fn(n);
			const d = process.cpuUsage(t);
			min = Math.min(min, ((d.user + d.system) * 1000) / n);
		}
		console.log(k + ' ' + min.toFixed(1));
	}
})();
