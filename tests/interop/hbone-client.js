// SPDX-License-Identifier: Apache-2.0
//
// An HBONE client that nobody on this project wrote the protocol side of:
// Node.js's built-in http2 module sends CONNECT over mutual TLS 1.3 to a
// sockmeshd inbound port, sends N pseudo-random bytes, half-closes, reads
// the echo, and prints one JSON line:
//   {"ok":bool,"status":N,"sent":N,"received":N,"sent_sha256":"..","received_sha256":"..",
//    "peer_spiffe_id":"..","error":".."}
// Usage: node hbone-client.js HOST PORT AUTHORITY CREDS_DIR BYTES [TIMEOUT_MS]
// CREDS_DIR holds cert.pem, key.pem and bundle.pem (scripts/test-pki.sh);
// without cert.pem no client certificate is sent and HBONE_CA names the roots.
// HBONE_SNI, if set, is sent as the TLS server name (how a client names the
// SVID it wants the server to present, docs/tunnel.md).
// HBONE_SECLEVEL=N sets this side's OpenSSL security level (0 lets it present
// a SHA-1-signed or RSA 1024 chain, as a careless or hostile peer would).
'use strict';
const fs = require('fs');
const http2 = require('http2');
const crypto = require('crypto');
const path = require('path');

const [host, port, authority, creds, bytesArg, timeoutArg] = process.argv.slice(2);
if (!creds) {
	console.error('usage: node hbone-client.js HOST PORT AUTHORITY CREDS_DIR BYTES [TIMEOUT_MS]');
	process.exit(2);
}
const nbytes = parseInt(bytesArg || '0', 10);
const result = { ok: false, status: 0, sent: 0, received: 0, error: '' };
const sentHash = crypto.createHash('sha256');
const recvHash = crypto.createHash('sha256');

function finish(error) {
	if (error && !result.error)
		result.error = String(error.message || error);
	result.sent_sha256 = sentHash.digest('hex');
	result.received_sha256 = recvHash.digest('hex');
	result.ok = !result.error && result.status === 200 && result.sent === nbytes &&
		result.received === nbytes && result.sent_sha256 === result.received_sha256;
	console.log(JSON.stringify(result));
	process.exit(result.ok ? 0 : 1);
}

const timer = setTimeout(() => finish(new Error('timeout')), parseInt(timeoutArg || '15000', 10));
timer.unref();

// A directory without cert.pem means "present no client certificate"; the
// roots then come from HBONE_CA.
const withCert = fs.existsSync(path.join(creds, 'cert.pem'));
const client = http2.connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, {
	key: withCert ? fs.readFileSync(path.join(creds, 'key.pem')) : undefined,
	cert: withCert ? fs.readFileSync(path.join(creds, 'cert.pem')) : undefined,
	ca: fs.readFileSync(withCert ? path.join(creds, 'bundle.pem') : process.env.HBONE_CA),
	minVersion: 'TLSv1.3',
	maxVersion: 'TLSv1.3',
	ALPNProtocols: ['h2'],
	servername: process.env.HBONE_SNI || undefined,
	ciphers: process.env.HBONE_SECLEVEL
		? `DEFAULT@SECLEVEL=${parseInt(process.env.HBONE_SECLEVEL, 10)}`
		: undefined,
	// SPIFFE: identity is the URI SAN, not a host name; we record it below.
	checkServerIdentity: () => undefined,
});
client.on('error', (e) => finish(e));
client.on('connect', (session, socket) => {
	const san = socket.getPeerCertificate().subjectaltname || '';
	const m = san.match(/URI:(spiffe:\/\/[^,\s]+)/);
	result.peer_spiffe_id = m ? m[1] : '';
});

// HBONE_JUNK_HEADER=N adds a header with an N-byte value (hostile-input tests);
// HBONE_FORWARDED, a forwarded header with that value (the caller's address a peer claims).
const headers = { ':method': 'CONNECT', ':authority': authority };
if (process.env.HBONE_JUNK_HEADER)
	headers['x-junk'] = 'j'.repeat(parseInt(process.env.HBONE_JUNK_HEADER, 10));
if (process.env.HBONE_FORWARDED)
	headers['forwarded'] = process.env.HBONE_FORWARDED;
const req = client.request(headers);
req.on('response', (headers) => {
	result.status = headers[':status'];
	if (result.status !== 200) {
		finish(new Error(`status ${result.status}`));
		return;
	}
	// pseudo-random payload, written in chunks, then half-close
	const chunk = 16384;
	let left = nbytes;
	const pump = () => {
		while (left > 0) {
			const n = Math.min(chunk, left);
			const buf = crypto.randomBytes(n);
			sentHash.update(buf);
			result.sent += n;
			left -= n;
			if (!req.write(buf)) {
				req.once('drain', pump);
				return;
			}
		}
		req.end();
	};
	pump();
});
req.on('data', (d) => {
	recvHash.update(d);
	result.received += d.length;
});
req.on('end', () => {
	client.close();
	finish();
});
req.on('error', (e) => finish(e));
