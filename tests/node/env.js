'use strict';
// What the bootstrap gave this process, one line each: NODE_OPTIONS, whether
// the adapter is loaded, the V8 heap limit. Then, by argv[2]:
//   request  serves one request to itself (X-Request-Id: env-js-1) whose
//            handler logs from a timer;
//   child    runs itself as a child ("report-child") and prints its line.
const KEY = Symbol.for('reqctx.adapter');
const mode = process.argv[2];
const opts = process.env.NODE_OPTIONS;
const adapter = globalThis[KEY] ? 1 : 0;

if (mode === 'report-child') {
	process.stdout.write('child NODE_OPTIONS=' + opts + ' adapter=' + adapter + '\n');
	process.exit(0);
}
console.log(opts === undefined ? 'NODE_OPTIONS unset' : 'NODE_OPTIONS=' + opts);
console.log('adapter=' + adapter);
console.log('heap_limit_mb=' + Math.round(require('v8').getHeapStatistics().heap_size_limit / 1048576));
if (mode === 'child') {
	const out = require('child_process').execFileSync(process.execPath, [__filename, 'report-child']);
	process.stdout.write(out);
} else if (mode === 'request') {
	const http = require('http');
	const srv = http.createServer((req, res) => {
		setTimeout(() => {
			console.log('in a timer of the request');
			res.end('ok\n');
		}, 5);
	});
	srv.listen(0, '127.0.0.1', () => {
		http.get({ host: '127.0.0.1', port: srv.address().port, headers: { 'X-Request-Id': 'env-js-1' } },
			(res) => {
				res.resume();
				res.on('end', () => srv.close());
			});
	});
}
