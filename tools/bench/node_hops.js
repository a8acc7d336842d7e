'use strict';
// Per-hop cost for tools/bench/node.sh: N awaits of a resolved promise, N/10
// setImmediate hops and N/10 process.nextTick hops, timed with hrtime, the
// best of ROUNDS. Prints "await NS", "immediate NS", "nexttick NS" (ns per hop).
const N = Number(process.argv[2] || 1000000);
const ROUNDS = Number(process.argv[3] || 5);

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

async function best(fn, n) {
	let min = Infinity;
	for (let r = 0; r < ROUNDS; r++) {
		const t = process.hrtime.bigint();
		await fn(n);
		min = Math.min(min, Number(process.hrtime.bigint() - t) / n);
	}
	return min.toFixed(1);
}

(async () => {
	console.log('await ' + await best(awaits, N));
	console.log('immediate ' + await best((n) => hops(n, setImmediate), N / 10));
	console.log('nexttick ' + await best((n) => hops(n, process.nextTick), N / 10));
})();
