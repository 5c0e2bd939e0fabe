import assert from "node:assert/strict";
import { test } from "node:test";
import { AuthenticationError, NotLoggedIn, PermissionDenied, WrongApiKey } from "flamel-usage-client";
import { admin, newUser, reader, recordingFetch, server } from "./support.js";

const PASSWORD = "correct horse battery";

/** The `connect.sid` cookie a sign-in on the server sets, as `name=value`. */
async function signIn(email: string): Promise<string> {
  const response = await fetch(`${server.url}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  assert.equal(response.status, 200);
  const session = response.headers.getSetCookie().find((line) => line.startsWith("connect.sid="));
  assert.ok(session, "the sign-in set no connect.sid");
  return session.split(";")[0] ?? "";
}

test("usage() with an API key reads that user's usage", async () => {
  const user = await newUser();
  const key = await admin().createKey(user.id, { name: "ts test" });
  const usage = await reader().usage({ apiKey: key.key });
  assert.deepEqual(usage, await admin().getUserUsage(user.id));
  assert.equal(usage.maxCredit, 1000);
  assert.equal(usage.currentCredit, 1000);
});

test("usage() with a browser's Cookie header forwards the session cookie alone", async () => {
  const user = await newUser(server.largePlan, PASSWORD);
  const session = await signIn(user.email);
  const { fetch, sent } = recordingFetch();
  const usage = await reader({ fetch }).usage({ cookie: `theme=dark; ${session}; _ga=GA1.2.3` });
  assert.equal(usage.maxCredit, 1000);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]?.headers.get("cookie"), session);
  assert.equal(sent[0]?.headers.get("x-api-key"), null);
});

test("usage() forwards the session cookie under the name it is configured with", async () => {
  // This server reads connect.sid only, so it does not know the renamed cookie.
  const user = await newUser(server.largePlan, PASSWORD);
  const session = await signIn(user.email);
  const renamed = session.replace(/^connect\.sid=/, "platform.sid=");
  const { fetch, sent } = recordingFetch();
  await assert.rejects(
    reader({ fetch, sessionCookieName: "platform.sid" }).usage({ cookie: renamed }),
    NotLoggedIn,
  );
  assert.equal(sent[0]?.headers.get("cookie"), renamed);
});

test("usage() without a session cookie is NotLoggedIn, sent once", async () => {
  for (const cookie of [undefined, "", "theme=dark", "connect.sidx=1"]) {
    const { fetch, sent } = recordingFetch();
    const error = await reader({ fetch })
      .usage({ cookie })
      .then(
        () => assert.fail("usage() answered without a session"),
        (caught: unknown) => caught,
      );
    assert.ok(error instanceof NotLoggedIn && error instanceof PermissionDenied);
    assert.equal(error.status, 403);
    assert.equal(error.reason, "not_logged_in");
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.headers.get("cookie"), null);
  }
});

test("usage() with a wrong or revoked key is WrongApiKey", async () => {
  const user = await newUser();
  const key = await admin().createKey(user.id);
  await admin().revokeKey(key.id);
  await admin().revokeKey(key.id); // again: changes nothing
  for (const apiKey of ["flm_not-a-key", key.key]) {
    const error = await reader()
      .usage({ apiKey })
      .catch((caught: unknown) => caught);
    assert.ok(error instanceof WrongApiKey && error instanceof AuthenticationError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.reason, "wrong_api_key");
    assert.match(error.message, /^401 wrong_api_key/);
  }
});
