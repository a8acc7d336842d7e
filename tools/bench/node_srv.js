'use strict';
// The Node throughput row's server (tools/bench/node.sh): logs 2 lines per
// request on stdout (a file), with a promise hop and a timer-free await
// between them. usage: node node_srv.js PORT
const http = require('http');

http.createServer(async (req, res) => {
	console.log('in ' + req.url);
	await Promise.resolve();
	res.end('ok\n');
	console.log('done ' + req.url);
}).listen(Number(process.argv[2]), '127.0.0.1');
