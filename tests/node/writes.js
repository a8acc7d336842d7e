'use strict';
// The Node suite's server for the adapter's lazy entering: the request's
// context must reach the library at each write it makes, from whatever hop
// the write happens in. Plain `http`, no knowledge of reqctx. Each request
// logs WRITE_LINES lines, each naming the request's URL (which holds
// loadcheck's token):
//   on stdout (argv[2] + '.out' is where the suite puts it):
//     start            console.log in the request handler (an I/O callback)
//     after-nested     console.log in the handler, after an AsyncResource of
//                      an earlier request ran inside it and wrote
//     writesync-fd1    fs.writeSync(1) in a timer callback (pino's default
//                      destination writes this way)
//     boom             fs.write(1) in a timer callback: one threadpool write
//                      per line, as sonic-boom does when it is not busy
//     upstream-response  the response of a GET sent through an http.Agent
//                      (maxSockets 2) from a promise continuation
//     after-upstream   console.log after awaiting it
//     after-end        console.log after res.end()
//   in the log file LOG (opened for appending; its name ends in .log):
//     appendfile       fs.appendFile(LOG) in a timer callback: open, write
//                      and close in the threadpool
//     writesync-log    fs.writeSync on an fd of LOG opened at start-up, in
//                      the same timer callback
// Start-up logs one line on stdout once it listens (outside any request).
//
// usage: node writes.js PORT_FILE UPSTREAM_PORT LOG
const http = require('http');
const fs = require('fs');
const { AsyncResource } = require('async_hooks');

const [portFile, upPort, logPath] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
const logFd = fs.openSync(logPath, 'a');
const devNull = fs.openSync('/dev/null', 'w');
let earlier = null; // an AsyncResource made in an earlier request's handler

/* A minimal sonic-boom-like writer: one fs.write(fd) per line. */
class FdWriter {
	constructor(fd) {
		this.fd = fd;
	}

	write(line, cb) {
		fs.write(this.fd, line, (err) => cb(err));
	}
}
const boom = new FdWriter(1);

function upstream(url) {
	return new Promise((resolve, reject) => {
		http.get({ host: '127.0.0.1', port: upPort, path: '/up', agent }, (res) => {
			console.log('upstream-response ' + url);
			res.resume();
			res.on('end', resolve);
		}).on('error', reject);
	});
}

function timerWrites(u) {
	return new Promise((resolve, reject) => {
		setTimeout(() => {
			let left = 2;
			const done = (err) => (err ? reject(err) : --left === 0 && resolve());

			fs.writeSync(1, 'writesync-fd1 ' + u + '\n');
			boom.write('boom ' + u + '\n', done);
			fs.appendFile(logPath, 'appendfile ' + u + '\n', done);
			fs.writeSync(logFd, 'writesync-log ' + u + '\n');
		}, 1 + Math.floor(Math.random() * 3));
	});
}

async function handle(req, res) {
	const u = req.url;

	console.log('start ' + u);
	if (earlier)
		earlier.runInAsyncScope(() => fs.writeSync(devNull, 'x\n'));
	earlier = new AsyncResource('EarlierRequest');
	console.log('after-nested ' + u);
	await timerWrites(u);
	await Promise.resolve();
	await upstream(u);
	console.log('after-upstream ' + u);
	res.setHeader('Content-Type', 'text/plain');
	res.end('ok\n');
	console.log('after-end ' + u);
}

const srv = http.createServer((req, res) => {
	handle(req, res).catch((e) => {
		console.error('handler failed: ' + (e && e.stack));
		res.statusCode = 500;
		res.end();
	});
});
srv.keepAliveTimeout = 60000;

function listen() {
	srv.listen(0, '127.0.0.1', () => {
		console.log('startup: listening');
		fs.writeFileSync(portFile + '.tmp', String(srv.address().port));
		fs.renameSync(portFile + '.tmp', portFile);
	});
}

// The threadpool starts before the load, as in a server that touches files
// at start-up: libuv makes its 4 threads at the first job, and jobs queued
// before any of them has waited once are not followed (README, Limits:
// *Thread pools started under load*). Four jobs at once; listen once the
// workers have had time to wait.
let warm = 4;
for (let i = 0; i < 4; i++)
	fs.write(devNull, 'warm\n', () => --warm === 0 && setTimeout(listen, 100));
