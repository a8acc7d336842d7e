'use strict';
// A keep-alive upstream for the Node suites, run without the library:
// answers every request with "up\n" after 1-4 ms. Writes its port to argv[2].
const http = require('http');
const fs = require('fs');

const srv = http.createServer((req, res) => {
	req.resume();
	setTimeout(() => res.end('up\n'), 1 + Math.floor(Math.random() * 4));
});
srv.keepAliveTimeout = 60000;
srv.listen(0, '127.0.0.1', () => {
	fs.writeFileSync(process.argv[2] + '.tmp', String(srv.address().port));
	fs.renameSync(process.argv[2] + '.tmp', process.argv[2]);
});
