// Oracle for tests/test_cookie_interop.py: runs the real npm cookie-signature.
// stdin: one request {op, value, secret} or an array of them (one node start for many cases).
// stdout: the result, or an array of results in the same order.
//   sign   -> cookie-signature sign(value, secret)
//   unsign -> cookie-signature unsign(value, secret): the value, or false
//   cookie -> the connect.sid value express-session sets: encodeURIComponent('s:' + sign(...))
'use strict';

const fs = require('fs');
const signature = require('cookie-signature');

const OPS = {
  sign: (value, secret) => signature.sign(value, secret),
  unsign: (value, secret) => signature.unsign(value, secret),
  cookie: (value, secret) => encodeURIComponent('s:' + signature.sign(value, secret)),
};

function run(request) {
  const op = OPS[request.op];
  if (!op) {
    throw new Error('unknown op: ' + JSON.stringify(request.op));
  }
  return op(request.value, request.secret);
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const output = Array.isArray(input) ? input.map(run) : run(input);
process.stdout.write(JSON.stringify(output));
