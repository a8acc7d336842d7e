'use strict';
// An http server that logs with pino (JSON lines, one write(2) each on
// stderr), two lines per request: one when it arrives and one from a timer
// before the response. It knows nothing of reqctx.
//
// usage: node pino_srv.js NODE_MODULES_DIR   (where pino is installed)
// Prints "port N" on stdout once it listens on 127.0.0.1.
const http = require('http');
const path = require('path');
const pino = require(path.join(process.argv[2], 'pino'));

const log = pino({ base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));

const srv = http.createServer((req, res) => {
	log.info({ url: req.url }, 'request');
	setTimeout(() => {
		log.info({ url: req.url, status: 200 }, 'done');
		res.setHeader('Content-Type', 'text/plain');
		res.end('ok\n');
	}, 1);
});

srv.listen(0, '127.0.0.1', () => {
	log.info('listening');
	console.log('port ' + srv.address().port);
});
