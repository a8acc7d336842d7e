'use strict';
// The Node suite's server: plain `http`, no AsyncLocalStorage, no knowledge
// of reqctx. Each request logs HOP_LINES lines on stdout, before and after
// every kind of hop Node makes in user space, each line naming the request's
// URL (which holds loadcheck's token):
//   setTimeout, setInterval (two runs), setImmediate, process.nextTick,
//   queueMicrotask, a promise chain and await, fs.promises and an fs
//   callback (libuv threadpool), a GET through http.Agent({keepAlive: true,
//   maxSockets: 4}) to a local upstream (queued when all 4 sockets are busy),
//   an EventEmitter listener registered at start-up, the response's
//   'finish' event, and a line after res.end().
// Start-up logs a line and arms a timer that logs: both outside any request.
//
// usage: node hops.js PORT_FILE UPSTREAM_PORT
const http = require('http');
const fs = require('fs');
const { EventEmitter } = require('events');

const [portFile, upPort] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const bus = new EventEmitter();
const log = (what, url) => console.log(what + ' ' + url);

console.log('startup: hops server starting');
setTimeout(() => console.log('startup: timer armed at start-up'), 1);
bus.on('hop', (url, done) => {
	log('emitter-listener', url);
	done();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function upstream(url) {
	return new Promise((resolve, reject) => {
		http.get({ host: '127.0.0.1', port: upPort, path: '/up', agent }, (res) => {
			log('upstream-response', url);
			res.on('data', () => {});
			res.on('end', () => {
				log('upstream-end', url);
				resolve();
			});
		}).on('error', reject);
	});
}

async function handle(req, res) {
	const u = req.url;

	log('start', u);
	await sleep(1 + Math.floor(Math.random() * 3));
	log('after-timeout', u);
	await new Promise((resolve) => {
		let n = 0;
		const t = setInterval(() => {
			log('interval-' + ++n, u);
			if (n === 2) {
				clearInterval(t);
				resolve();
			}
		}, 1);
	});
	await new Promise((resolve) => setImmediate(() => {
		log('immediate', u);
		resolve();
	}));
	process.nextTick(() => log('next-tick', u));
	queueMicrotask(() => log('microtask', u));
	await Promise.resolve(u).then((v) => log('then-1', v)).then(() => log('then-2', u));
	log('after-chain', u);
	await fs.promises.readFile(__filename);
	log('after-fs-promise', u);
	await new Promise((resolve) => fs.stat(__filename, () => {
		log('fs-callback', u);
		resolve();
	}));
	await upstream(u);
	log('after-upstream', u);
	await new Promise((resolve) => setTimeout(() => bus.emit('hop', u, resolve), 1));
	res.on('finish', () => log('finish', u));
	res.setHeader('Content-Type', 'text/plain');
	res.end('ok\n');
	log('after-end', u);
}

const srv = http.createServer((req, res) => {
	handle(req, res).catch((e) => {
		console.error('handler failed: ' + (e && e.stack));
		res.statusCode = 500;
		res.end();
	});
});
srv.keepAliveTimeout = 60000;
srv.listen(0, '127.0.0.1', () => {
	console.log('startup: listening');
	fs.writeFileSync(portFile + '.tmp', String(srv.address().port));
	fs.renameSync(portFile + '.tmp', portFile);
});
