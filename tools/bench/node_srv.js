'use strict';
// The Node throughput row's server (tools/bench/node.sh): logs 2 lines per
// request on stdout (a file), with a promise hop and a timer-free await
// between them. usage: node node_srv.js PORT [WARM COUNT]
// With WARM and COUNT, for callgrind (--zero-before=uv_os_getpriority
// --dump-before=uv_os_gethostname): calls os.getPriority() when request
// WARM comes in and os.hostname() when request WARM + COUNT does, so that
// the dump holds exactly COUNT requests.
const http = require('http');
const os = require('os');

const warm = Number(process.argv[3] || 0);
const count = Number(process.argv[4] || 0);
let n = 0;

http.createServer(async (req, res) => {
	if (warm && ++n === warm)
		os.getPriority();
	else if (warm && n === warm + count)
		os.hostname();
	console.log('in ' + req.url);
	await Promise.resolve();
	res.end('ok\n');
	console.log('done ' + req.url);
}).listen(Number(process.argv[2]), '127.0.0.1');
