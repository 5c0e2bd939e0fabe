import assert from "node:assert/strict";
import { test } from "node:test";
import { HoldNotActive, HoldNotFound, InsufficientCredit } from "flamel-usage-client";
import { admin, newUser, server } from "./support.js";

test("a hold takes credit at once; settling keeps the cost and gives the rest back", async () => {
  const user = await newUser(server.smallPlan);
  const idempotencyKey = `render-${user.id}`;
  const made = await admin().hold({
    userId: user.id,
    kind: "image",
    cost: 6,
    ttlSeconds: 600,
    idempotencyKey,
  });
  assert.equal(made.replayed, false);
  assert.equal(made.hold.state, "active");
  assert.equal(made.hold.held, 6);
  assert.equal(made.usage.currentCredit, 4);
  const again = await admin().hold({
    userId: user.id,
    kind: "image",
    cost: 6,
    ttlSeconds: 600,
    idempotencyKey,
  });
  assert.equal(again.replayed, true);
  assert.deepEqual(again.hold, made.hold);
  assert.deepEqual(await admin().listHolds(user.id), [made.hold]);
  const settled = await admin().settleHold(made.hold.holdId, { cost: 2 });
  assert.equal(settled.hold.state, "settled");
  assert.equal(settled.usage.currentCredit, 8);
  assert.equal((await admin().settleHold(made.hold.holdId, { cost: 2 })).replayed, true);
  await assert.rejects(admin().releaseHold(made.hold.holdId), HoldNotActive);
  assert.deepEqual(await admin().listHolds(user.id), []);
});

test("a released hold gives everything back; refusals are a charge's", async () => {
  const user = await newUser(server.smallPlan);
  const made = await admin().hold({ userId: user.id, kind: "image", cost: 3 });
  const released = await admin().releaseHold(made.hold.holdId);
  assert.equal(released.hold.state, "released");
  assert.equal(released.usage.currentCredit, 10);
  await assert.rejects(admin().hold({ userId: user.id, kind: "image", cost: 11 }), InsufficientCredit);
  await assert.rejects(admin().releaseHold(999_999_999), HoldNotFound);
});
