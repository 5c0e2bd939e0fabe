import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AdminClient,
  AdminUnauthorized,
  AuthenticationError,
  BadRequest,
  IdempotencyKeyReused,
  KeyNotFound,
  NotFound,
  PlanNotFound,
  TransportError,
  UserExists,
  UserNotFound,
} from "flamel-usage-client";
import { admin, newUser, reader, recordingFetch, server, uniqueEmail } from "./support.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("createUser() answers the new user; the same email again is UserExists", async () => {
  const email = uniqueEmail();
  const user = await admin().createUser({ email, plan: server.smallPlan, anchor: "2026-01-31T12:00:00Z" });
  assert.ok(Number.isInteger(user.id) && user.id > 0);
  assert.equal(user.email, email);
  assert.equal(user.plan, server.smallPlan);
  assert.equal(Date.parse(user.anchor), Date.parse("2026-01-31T12:00:00Z"));
  await assert.rejects(
    admin().createUser({ email: email.toUpperCase(), plan: server.smallPlan }),
    UserExists,
  );
});

test("createUser() with an unknown plan is PlanNotFound; bad input is BadRequest", async () => {
  const error = await admin()
    .createUser({ email: uniqueEmail(), plan: "no such plan" })
    .catch((caught: unknown) => caught);
  assert.ok(error instanceof PlanNotFound && error instanceof NotFound);
  assert.equal(error.status, 404);
  await assert.rejects(admin().createUser({ email: "not an email", plan: server.smallPlan }), BadRequest);
});

test("createUser() is sent once: a lost answer is a TransportError, not a second user", async () => {
  const { fetch, sent } = recordingFetch((url) => url.endsWith("/api/admin/users"));
  await assert.rejects(
    new AdminClient({ baseUrl: server.url, token: server.token, fetch }).createUser({
      email: uniqueEmail(),
      plan: server.smallPlan,
    }),
    TransportError,
  );
  assert.equal(sent.length, 1);
});

test("getUser() reads a user as created; an unknown user is UserNotFound", async () => {
  const user = await newUser(server.smallPlan);
  assert.deepEqual(await admin().getUser(user.id), user);
  await assert.rejects(admin().getUser(999_999_999), UserNotFound);
});

test("getUserUsage() reads a user's usage; an unknown user is UserNotFound", async () => {
  const user = await newUser(server.smallPlan);
  const usage = await admin().getUserUsage(user.id);
  assert.equal(usage.maxCredit, 10);
  assert.equal(usage.maxTtpCount, 2);
  assert.equal(usage.maxEditCount, 1);
  await assert.rejects(admin().getUserUsage(999_999_999), UserNotFound);
});

test("changePlan() now, and from the next period", async () => {
  const user = await newUser(server.smallPlan);
  const now = await admin().changePlan(user.id, { plan: server.largePlan });
  assert.equal(now.plan, server.largePlan);
  assert.equal(now.pendingPlan, null);
  assert.equal(now.usage.maxCredit, 1000);
  const later = await admin().changePlan(user.id, { plan: server.smallPlan, effective: "next_period" });
  assert.equal(later.plan, server.largePlan);
  assert.equal(later.pendingPlan, server.smallPlan);
  await assert.rejects(admin().changePlan(user.id, { plan: "no such plan" }), PlanNotFound);
});

test("createKey() answers the secret once; the key reads its user's usage", async () => {
  const user = await newUser(server.smallPlan);
  const key = await admin().createKey(user.id, { name: "worker", expiresAt: "2099-12-31T23:59:59Z" });
  assert.equal(key.userId, user.id);
  assert.equal(key.name, "worker");
  assert.ok(key.key.startsWith(key.prefix));
  assert.equal((await reader().usage({ apiKey: key.key })).maxCredit, 10);
  const unnamed = await admin().createKey(user.id);
  assert.equal(unnamed.name, null);
  assert.equal(unnamed.expiresAt, null);
  await assert.rejects(admin().createKey(999_999_999), UserNotFound);
});

test("revokeKey() of an unknown key is KeyNotFound", async () => {
  await assert.rejects(admin().revokeKey(999_999_999), KeyNotFound);
});

test("buyCredits() adds purchased credit and answers the usage after it", async () => {
  const user = await newUser(server.smallPlan);
  const bought = await admin().buyCredits(user.id, { amount: 2.5, expiresAt: "2099-01-01T00:00:00Z" });
  assert.equal(bought.purchase.amount, 2.5);
  assert.equal(bought.usage.additionalCredit, 2.5);
  assert.equal((await admin().getUserUsage(user.id)).additionalCredit, 2.5);
  await assert.rejects(admin().buyCredits(user.id, { amount: 0.0001 }), BadRequest);
});

test("a purchase whose answer was lost is retried with its key and sold once", async () => {
  const user = await newUser(server.smallPlan);
  const { fetch, sent } = recordingFetch((url) => url.endsWith("/credits") && sent.length === 1);
  const bought = await admin({ fetch }).buyCredits(user.id, { amount: 3 });
  assert.equal(sent.length, 2);
  const keys = sent.map((request) => request.headers.get("idempotency-key"));
  assert.match(keys[0] ?? "", UUID);
  assert.equal(keys[0], keys[1]);
  assert.equal(bought.replayed, true);
  const idempotencyKey = `order-${user.id}`;
  const first = await admin().buyCredits(user.id, { amount: 1, idempotencyKey });
  const again = await admin().buyCredits(user.id, { amount: 1, idempotencyKey });
  assert.equal(first.replayed, false);
  assert.deepEqual({ ...again, replayed: false }, first);
  await assert.rejects(admin().buyCredits(user.id, { amount: 2, idempotencyKey }), IdempotencyKeyReused);
  assert.equal((await admin().getUserUsage(user.id)).additionalCredit, 4);
});

test("a wrong admin token is AdminUnauthorized, for every call", async () => {
  const wrong = new AdminClient({ baseUrl: server.url, token: `${server.token}x` });
  const calls = [
    () => wrong.createUser({ email: uniqueEmail(), plan: server.smallPlan }),
    () => wrong.getUserUsage(1),
    () => wrong.changePlan(1, { plan: server.smallPlan }),
    () => wrong.createKey(1),
    () => wrong.revokeKey(1),
    () => wrong.buyCredits(1, { amount: 1 }),
    () => wrong.charge({ userId: 1, kind: "ttp" }),
    () => wrong.refund("any"),
  ];
  for (const call of calls) {
    const error = await call().catch((caught: unknown) => caught);
    assert.ok(error instanceof AdminUnauthorized && error instanceof AuthenticationError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.reason, "admin_unauthorized");
  }
});

test("webhooks: a private address is BadRequest; unknown endpoints are NotFound", async () => {
  await assert.rejects(
    admin().createWebhook({ url: "https://127.0.0.1/hooks", events: ["credit.depleted"] }),
    BadRequest,
  );
  await assert.rejects(
    admin().createWebhook({ url: "https://169.254.169.254/latest", events: ["credit.depleted"] }),
    BadRequest,
  );
  assert.ok(Array.isArray(await admin().listWebhooks()));
  await assert.rejects(admin().deleteWebhook(999_999_999), NotFound);
  await assert.rejects(admin().rotateWebhookSecret(999_999_999), NotFound);
  await assert.rejects(admin().listWebhookDeliveries(999_999_999), NotFound);
  await assert.rejects(admin().redeliverWebhook(999_999_999, 1), NotFound);
});
