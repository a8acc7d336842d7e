'use strict';
// The hand-off suite's server: a plain Node http server that logs one line
// when a request comes in and one right after res.end(), with no system
// call between the response's write and that line's. Writes its port to
// argv[2].
const http = require('http');
const fs = require('fs');

const srv = http.createServer((req, res) => {
	console.log('in ' + req.url);
	res.setHeader('Content-Type', 'text/plain');
	res.end('ok\n');
	console.log('after-end ' + req.url);
});
srv.keepAliveTimeout = 60000;
srv.listen(0, '127.0.0.1', () => {
	fs.writeFileSync(process.argv[2] + '.tmp', String(srv.address().port));
	fs.renameSync(process.argv[2] + '.tmp', process.argv[2]);
});
