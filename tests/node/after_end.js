'use strict';
// The hand-off suite's server: a plain Node http server that logs one line
// when a request comes in and one right after res.end(), with no system
// call between the response's write and that line's. Each request also
// leaves some garbage, so that V8's scavenges (whose parallel jobs the main
// thread joins through a mutex and condvar) happen often. Writes its port to
// argv[2].
const http = require('http');
const fs = require('fs');

const srv = http.createServer((req, res) => {
	console.log('in ' + req.url);
	const junk = [];
	for (let i = 0; i < 500; i++)
		junk.push({ i, s: 'x' + i });
	res.setHeader('Content-Type', 'text/plain');
	res.end('ok ' + junk.length + '\n');
	console.log('after-end ' + req.url);
});
srv.keepAliveTimeout = 60000;
srv.listen(0, '127.0.0.1', () => {
	fs.writeFileSync(process.argv[2] + '.tmp', String(srv.address().port));
	fs.renameSync(process.argv[2] + '.tmp', process.argv[2]);
});
