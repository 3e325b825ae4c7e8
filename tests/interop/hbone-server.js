// SPDX-License-Identifier: Apache-2.0
//
// An HBONE server written with Node.js's built-in http2 module: accepts
// CONNECT over mutual TLS 1.3, answers 200 and echoes the stream's bytes back
// (half-close propagated). For each stream it appends one JSON line to LOG:
//   {"authority":"..","peer_spiffe_id":"..","traceparent":"..","bytes":N}
// Usage: node hbone-server.js HOST PORT CREDS_DIR LOG
// Prints {"event":"listening"} once it listens. Exits on SIGTERM.
// HBONE_SECLEVEL=N sets its OpenSSL security level (0 lets it present a
// SHA-1-signed or RSA 1024 chain, as a careless or hostile server would).
'use strict';
const fs = require('fs');
const http2 = require('http2');
const path = require('path');

const [host, port, creds, log] = process.argv.slice(2);
if (!log) {
	console.error('usage: node hbone-server.js HOST PORT CREDS_DIR LOG');
	process.exit(2);
}
const server = http2.createSecureServer({
	key: fs.readFileSync(path.join(creds, 'key.pem')),
	cert: fs.readFileSync(path.join(creds, 'cert.pem')),
	ca: fs.readFileSync(path.join(creds, 'bundle.pem')),
	requestCert: true,
	rejectUnauthorized: true,
	minVersion: 'TLSv1.3',
	maxVersion: 'TLSv1.3',
	ALPNProtocols: ['h2'],
	ciphers: process.env.HBONE_SECLEVEL
		? `DEFAULT@SECLEVEL=${parseInt(process.env.HBONE_SECLEVEL, 10)}`
		: undefined,
});
server.on('stream', (stream, headers) => {
	const san = stream.session.socket.getPeerCertificate().subjectaltname || '';
	const m = san.match(/URI:(spiffe:\/\/[^,\s]+)/);
	const entry = {
		authority: headers[':authority'] || '',
		peer_spiffe_id: m ? m[1] : '',
		traceparent: headers.traceparent || '',
		bytes: 0,
	};
	if (headers[':method'] !== 'CONNECT') {
		stream.respond({ ':status': 405 }, { endStream: true });
		return;
	}
	stream.respond({ ':status': 200 });
	stream.on('data', (d) => {
		entry.bytes += d.length;
		stream.write(d);
	});
	stream.on('end', () => {
		stream.end();
		fs.appendFileSync(log, JSON.stringify(entry) + '\n');
	});
	stream.on('error', () => {});
});
server.on('sessionError', () => {});
server.listen(parseInt(port, 10), host, () => console.log(JSON.stringify({ event: 'listening' })));
process.on('SIGTERM', () => process.exit(0));
