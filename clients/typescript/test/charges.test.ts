import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AlreadyRefunded,
  ChargeNotFound,
  Conflict,
  EditLimitExceeded,
  IdempotencyKeyReused,
  InsufficientCredit,
  InvalidIdempotencyKey,
  LimitExceeded,
  NotRefundable,
  TransportError,
  TtpLimitExceeded,
  UnknownKind,
} from "flamel-usage-client";
import { admin, newUser, recordingFetch, server } from "./support.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("charge() without a key makes one, charges, and answers the usage after it", async () => {
  const user = await newUser(server.smallPlan);
  const { fetch, sent } = recordingFetch();
  const outcome = await admin({ fetch }).charge({ userId: user.id, kind: "ttp", cost: 1.5 });
  assert.equal(outcome.replayed, false);
  assert.match(outcome.charge.idempotencyKey, UUID);
  assert.equal(sent[0]?.headers.get("idempotency-key"), outcome.charge.idempotencyKey);
  assert.equal(outcome.charge.cost, 1.5);
  assert.equal(outcome.charge.fromPlanCredit, 1.5);
  assert.equal(outcome.charge.refundedAt, null);
  assert.equal(outcome.usage.currentCredit, 8.5);
  assert.equal(outcome.usage.ttpCount, 1);
  const second = await admin().charge({ userId: user.id, kind: "ttp" });
  assert.notEqual(second.charge.idempotencyKey, outcome.charge.idempotencyKey);
});

test("the same key twice is charged once: the second answer is the first, replayed", async () => {
  const user = await newUser();
  const idempotencyKey = `job-${user.id}/render`;
  const first = await admin().charge({ userId: user.id, kind: "image", cost: 3, idempotencyKey });
  const again = await admin().charge({ userId: user.id, kind: "image", cost: 3, idempotencyKey });
  assert.equal(first.replayed, false);
  assert.equal(again.replayed, true);
  assert.deepEqual({ ...again, replayed: false }, first);
  assert.equal((await admin().getUserUsage(user.id)).currentCredit, 997);
});

test("a charge whose answer was lost after the server committed is retried once, with its key", async () => {
  const user = await newUser();
  const { fetch, sent } = recordingFetch((url) => url.endsWith("/api/admin/charges") && sent.length === 1);
  const outcome = await admin({ fetch }).charge({ userId: user.id, kind: "ttp", cost: 2 });
  assert.equal(sent.length, 2);
  const keys = sent.map((request) => request.headers.get("idempotency-key"));
  assert.equal(keys[0], keys[1]);
  assert.equal(outcome.charge.idempotencyKey, keys[0]);
  assert.equal(outcome.replayed, true);
  assert.equal(outcome.usage.currentCredit, 998);
  const usage = await admin().getUserUsage(user.id);
  assert.equal(usage.currentCredit, 998);
  assert.equal(usage.ttpCount, 1);
});

test("a charge given its own key keeps it across retries", async () => {
  const user = await newUser();
  const { fetch, sent } = recordingFetch((url) => url.endsWith("/api/admin/charges") && sent.length < 3);
  const outcome = await admin({ fetch }).charge({
    userId: user.id,
    kind: "edit",
    idempotencyKey: "edit-42" + user.id,
  });
  assert.deepEqual(
    sent.map((request) => request.headers.get("idempotency-key")),
    Array(3).fill("edit-42" + user.id),
  );
  assert.equal(outcome.replayed, true);
  assert.equal((await admin().getUserUsage(user.id)).editCount, 1);
});

test("retries are bounded: a connection that always drops is a TransportError", async () => {
  const user = await newUser();
  const { fetch, sent } = recordingFetch(() => true);
  await assert.rejects(admin({ fetch, retries: 1 }).charge({ userId: user.id, kind: "ttp" }), TransportError);
  assert.equal(sent.length, 2);
  assert.equal((await admin().getUserUsage(user.id)).ttpCount, 1);
});

test("the same key for another charge is IdempotencyKeyReused", async () => {
  const user = await newUser();
  const idempotencyKey = `reuse-${user.id}`;
  await admin().charge({ userId: user.id, kind: "ttp", idempotencyKey });
  const error = await admin()
    .charge({ userId: user.id, kind: "ttp", cost: 2, idempotencyKey })
    .catch((caught: unknown) => caught);
  assert.ok(error instanceof IdempotencyKeyReused && error instanceof Conflict, String(error));
  assert.equal(error.status, 409);
  assert.equal(error.reason, "idempotency_key_reused");
});

test("a charge beyond the credit is InsufficientCredit and changes nothing", async () => {
  const user = await newUser(server.smallPlan);
  const error = await admin()
    .charge({ userId: user.id, kind: "image", cost: 11 })
    .catch((caught: unknown) => caught);
  assert.ok(error instanceof InsufficientCredit, String(error));
  assert.equal(error.status, 402);
  assert.equal(error.reason, "insufficient_credit");
  assert.equal((await admin().getUserUsage(user.id)).currentCredit, 10);
});

test("charges past the plan's TTP or edit limit are LimitExceeded", async () => {
  const user = await newUser(server.smallPlan);
  await admin().charge({ userId: user.id, kind: "ttp" });
  await admin().charge({ userId: user.id, kind: "ttp" });
  await admin().charge({ userId: user.id, kind: "edit" });
  const ttp = await admin()
    .charge({ userId: user.id, kind: "ttp" })
    .catch((caught: unknown) => caught);
  assert.ok(ttp instanceof TtpLimitExceeded && ttp instanceof LimitExceeded, String(ttp));
  assert.equal(ttp.status, 429);
  assert.equal(ttp.reason, "ttp_limit_exceeded");
  await assert.rejects(admin().charge({ userId: user.id, kind: "edit" }), EditLimitExceeded);
  assert.equal((await admin().getUserUsage(user.id)).ttpCount, 2);
});

test("an unknown kind and a bad key are refused before anything is charged", async () => {
  const user = await newUser();
  await assert.rejects(admin().charge({ userId: user.id, kind: "teleport" }), UnknownKind);
  await assert.rejects(
    admin().charge({ userId: user.id, kind: "ttp", idempotencyKey: "k".repeat(256) }),
    InvalidIdempotencyKey,
  );
  assert.equal((await admin().getUserUsage(user.id)).currentCredit, 1000);
});

test("refund() gives the credit back once; its key may hold a slash", async () => {
  const user = await newUser(server.smallPlan);
  const idempotencyKey = `job/${user.id}/ttp`;
  await admin().charge({ userId: user.id, kind: "ttp", cost: 4, idempotencyKey });
  const refunded = await admin().refund(idempotencyKey);
  assert.equal(refunded.charge.idempotencyKey, idempotencyKey);
  assert.notEqual(refunded.charge.refundedAt, null);
  assert.equal(refunded.usage.currentCredit, 10);
  assert.equal(refunded.usage.ttpCount, 0);
  await assert.rejects(admin().refund(idempotencyKey), AlreadyRefunded);
  await assert.rejects(admin().refund(`never-${user.id}`), ChargeNotFound);
});

test("a refused charge is not refundable", async () => {
  const user = await newUser(server.smallPlan);
  const idempotencyKey = `too-dear-${user.id}`;
  await assert.rejects(
    admin().charge({ userId: user.id, kind: "image", cost: 50, idempotencyKey }),
    InsufficientCredit,
  );
  await assert.rejects(admin().refund(idempotencyKey), NotRefundable);
});
