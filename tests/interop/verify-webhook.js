// Oracle for tests/test_webhook_delivery.py: the npm standardwebhooks package verifies what
// our server signed and sent. stdin: an array of {secret, headers, body} (the body as
// received, text); stdout: an array of {ok: true, payload} or {ok: false, error}.
'use strict';

const fs = require('fs');
const { Webhook } = require('standardwebhooks');

function verify(message) {
  try {
    const payload = new Webhook(message.secret).verify(message.body, message.headers);
    return { ok: true, payload };
  } catch (error) {
    return { ok: false, error: String(error && error.message) };
  }
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(input.map(verify)));
