'use strict';
// Sends N GET requests to 127.0.0.1:PORT over CONNS keep-alive connections,
// one at a time on each, for the callgrind count of tools/bench/node.sh.
// usage: node node_client.js PORT N CONNS
const http = require('http');

const [port, n, conns] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
let sent = 0;
let done = 0;

function one() {
	if (sent >= n)
		return;
	const i = sent++;

	http.get({ host: '127.0.0.1', port, path: '/r' + i, agent }, (res) => {
		res.resume();
		res.on('end', () => {
			if (++done === n)
				agent.destroy();
			else
				one();
		});
	}).on('error', (e) => {
		console.error('node_client: ' + e.message);
		process.exit(1);
	});
}

for (let c = 0; c < conns; c++)
	one();
