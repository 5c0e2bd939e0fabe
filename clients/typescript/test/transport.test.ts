/** The transport's rules, against fake answers: what is retried, how long it waits, what fails. */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import {
  AdminClient,
  InvalidResponse,
  RateLimited,
  ServerError,
  ServiceUnavailable,
  TransportError,
  UsageClient,
} from "flamel-usage-client";

const USAGE = {
  currentCredit: 1,
  additionalCredit: 0,
  maxCredit: 1,
  period: "2026-11-25T00:00:00+00:00/2026-12-25T00:00:00+00:00",
  ttpCount: 0,
  maxTtpCount: null,
  editCount: 0,
  maxEditCount: null,
};
const BASE = "http://flamel.test";

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function unavailable(retryAfter = "0"): Response {
  return json(503, { success: false, code: 503, data: "service_unavailable" }, { "retry-after": retryAfter });
}

/** A fetch that gives these answers in turn (a function answer is called), counting calls. */
function scripted(...answers: (Response | (() => Response))[]): { fetch: typeof fetch; calls: () => number } {
  let calls = 0;
  const fake: typeof fetch = async () => {
    const answer = answers[Math.min(calls, answers.length - 1)];
    calls += 1;
    assert.ok(answer !== undefined);
    return typeof answer === "function" ? answer() : answer.clone();
  };
  return { fetch: fake, calls: () => calls };
}

test("a read is retried after 502, 503 and 504, then answers", async () => {
  const gateway = new Response("<html>bad gateway</html>", { status: 502 });
  const timeout = new Response("", { status: 504 });
  const { fetch, calls } = scripted(gateway, unavailable(), timeout, json(200, USAGE));
  const client = new UsageClient({ baseUrl: BASE, fetch, retries: 3, backoffMs: 1 });
  assert.deepEqual(await client.usage({ apiKey: "flm_x" }), USAGE);
  assert.equal(calls(), 4);
});

test("retries are bounded by `retries`; the last error is thrown", async () => {
  const { fetch, calls } = scripted(unavailable());
  const client = new UsageClient({ baseUrl: BASE, fetch, retries: 2, backoffMs: 1 });
  const error = await client.usage({ apiKey: "flm_x" }).catch((caught: unknown) => caught);
  assert.ok(error instanceof ServiceUnavailable && error instanceof ServerError);
  assert.equal(error.retryAfter, 0);
  assert.equal(calls(), 3);
});

test("retries: 0 sends once", async () => {
  const { fetch, calls } = scripted(unavailable());
  await assert.rejects(
    new UsageClient({ baseUrl: BASE, fetch, retries: 0 }).usage({ apiKey: "k" }),
    ServiceUnavailable,
  );
  assert.equal(calls(), 1);
});

test("the backoff doubles; a Retry-After is waited instead", async () => {
  const { fetch } = scripted(
    new Response("", { status: 502 }),
    new Response("", { status: 502 }),
    json(200, USAGE),
  );
  let started = performance.now();
  await new UsageClient({ baseUrl: BASE, fetch, backoffMs: 40 }).usage({ apiKey: "k" });
  assert.ok(performance.now() - started >= 40 + 80 - 5, "waited less than 40 + 80 ms");
  const second = scripted(unavailable("1"), json(200, USAGE));
  started = performance.now();
  await new UsageClient({ baseUrl: BASE, fetch: second.fetch, backoffMs: 1 }).usage({ apiKey: "k" });
  assert.ok(performance.now() - started >= 990, "did not wait the Retry-After second");
});

test("a Retry-After beyond 30 s is not waited for: the error is the caller's at once", async () => {
  const { fetch, calls } = scripted(unavailable("120"));
  const error = await new UsageClient({ baseUrl: BASE, fetch })
    .usage({ apiKey: "k" })
    .catch((caught: unknown) => caught);
  assert.ok(error instanceof ServiceUnavailable);
  assert.equal(error.retryAfter, 120);
  assert.equal(calls(), 1);
});

test("429 and other refusals are never retried", async () => {
  const limited = json(429, { success: false, code: 429, data: "too_many_requests" }, { "retry-after": "0" });
  const { fetch, calls } = scripted(limited);
  await assert.rejects(new UsageClient({ baseUrl: BASE, fetch }).usage({ apiKey: "k" }), RateLimited);
  assert.equal(calls(), 1);
});

test("calls that could apply twice are sent once, even after a 503", async () => {
  const { fetch, calls } = scripted(unavailable());
  const client = new AdminClient({ baseUrl: BASE, token: "t", fetch, backoffMs: 1 });
  await assert.rejects(client.createKey(1), ServiceUnavailable);
  await assert.rejects(client.createUser({ email: "a@b.c", plan: "p" }), ServiceUnavailable);
  assert.equal(calls(), 2);
});

test("an attempt that takes longer than timeoutMs is a TransportError, and retried", async () => {
  let calls = 0;
  const hanging: typeof fetch = (_input, init) => {
    calls += 1;
    return new Promise((_resolve, reject) => {
      // The timeout's own timer does not keep Node running; a real socket would.
      const socket = setTimeout(() => reject(new Error("never aborted")), 5000);
      init?.signal?.addEventListener("abort", () => {
        clearTimeout(socket);
        reject(init.signal?.reason);
      });
    });
  };
  const client = new UsageClient({ baseUrl: BASE, fetch: hanging, timeoutMs: 20, retries: 1, backoffMs: 1 });
  const error = await client.usage({ apiKey: "k" }).catch((caught: unknown) => caught);
  assert.ok(error instanceof TransportError);
  assert.match(error.message, /timed out/);
  assert.equal(calls, 2);
});

test("a server that is not there is a TransportError, its cause kept", async () => {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
  const client = new UsageClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 0 });
  const error = await client.usage({ apiKey: "k" }).catch((caught: unknown) => caught);
  assert.ok(error instanceof TransportError);
  assert.ok(error.cause instanceof Error);
  assert.equal(error.status, undefined);
});

test("a 2xx that is not a JSON object, or a redirect, is InvalidResponse", async () => {
  for (const answer of [
    new Response("<html>hi</html>", { status: 200 }),
    new Response("[1, 2]", { status: 200 }),
    new Response(null, { status: 302, headers: { location: "/login" } }),
  ]) {
    const { fetch } = scripted(answer);
    const error = await new UsageClient({ baseUrl: BASE, fetch })
      .usage({ apiKey: "k" })
      .catch((caught: unknown) => caught);
    assert.ok(error instanceof InvalidResponse, String(error));
  }
});

test("the base URL's path is kept, and must be http or https", async () => {
  const urls: string[] = [];
  const recording: typeof fetch = async (input) => {
    urls.push(String(input));
    return json(200, USAGE);
  };
  await new UsageClient({ baseUrl: "https://example.test/flamel/", fetch: recording }).usage({ apiKey: "k" });
  assert.deepEqual(urls, ["https://example.test/flamel/api/users/me/usage"]);
  assert.throws(() => new UsageClient({ baseUrl: "ftp://example.test" }), TypeError);
  assert.throws(() => new UsageClient({ baseUrl: "not a url" }), TypeError);
  assert.throws(() => new UsageClient({ baseUrl: `${BASE}/?tenant=1` }), TypeError);
  assert.throws(() => new UsageClient({ baseUrl: BASE, retries: -1 }), RangeError);
});

test("a credential fetch cannot send is a TypeError at once, not a retried TransportError", async () => {
  const { fetch, calls } = scripted(json(200, USAGE));
  await assert.rejects(new UsageClient({ baseUrl: BASE, fetch }).usage({ apiKey: "bad\nkey" }), TypeError);
  assert.equal(calls(), 0);
});
