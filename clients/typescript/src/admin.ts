import { randomUUID } from "node:crypto";
import { type Answer, type Call, type ClientOptions, Transport } from "./transport.js";
import type {
  BuyCreditsInput,
  BuyCreditsOutcome,
  BuyCreditsResult,
  ChangePlanInput,
  ChangePlanResult,
  ChargeInput,
  ChargeOutcome,
  ChargeResult,
  CreatedKey,
  CreateKeyInput,
  CreateUserInput,
  Hold,
  HoldInput,
  HoldOutcome,
  HoldResult,
  SettleHoldInput,
  CreateWebhookInput,
  CreatedWebhook,
  UsageInfo,
  User,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookSecret,
} from "./types.js";

export interface AdminClientOptions extends ClientOptions {
  /** The server's `FLAMEL_ADMIN_TOKEN`, sent as `Authorization: Bearer <token>`. */
  token: string;
}

/** One path segment: an id or an idempotency key, encoded (a `/` in a key becomes `%2F`). */
function segment(value: number | string): string {
  return encodeURIComponent(String(value));
}

/**
 * The operator API (`/api/admin/...`) for the platform's services: users, plans of
 * users, keys, purchased credit, charges, and holds for long jobs.
 *
 * Retried (transport errors, 502-504, with backoff): the calls that cannot apply twice,
 * namely the reads, `changePlan`, `revokeKey`, `charge` (its idempotency key makes a
 * retry a replay), `buyCredits` (as `charge`), `refund` (a charge is refunded once),
 * `hold` (as `charge`), `settleHold` and `releaseHold` (the same call again answers its
 * first answer) and `listHolds`. `createUser` and `createKey` are sent once: a lost
 * answer is a `TransportError`, and the caller decides (a second key would be made).
 */
export class AdminClient {
  private readonly transport: Transport;
  private readonly authorization: Record<string, string>;

  constructor(options: AdminClientOptions) {
    this.transport = new Transport(options);
    this.authorization = { authorization: `Bearer ${options.token}` };
  }

  /** `POST /api/admin/users`. */
  async createUser(input: CreateUserInput): Promise<User> {
    const path = "/api/admin/users";
    return (await this.send({ method: "POST", path, json: input, repeatable: false })).body as User;
  }

  /** `GET /api/admin/users/{userId}`: email, plan, anchor and externalId. */
  async getUser(userId: number): Promise<User> {
    const path = `/api/admin/users/${segment(userId)}`;
    return (await this.send({ method: "GET", path, repeatable: true })).body as User;
  }

  /** `GET /api/admin/users/{userId}/usage`: the user's usage, as the user would read it. */
  async getUserUsage(userId: number): Promise<UsageInfo> {
    const path = `/api/admin/users/${segment(userId)}/usage`;
    return (await this.send({ method: "GET", path, repeatable: true })).body as UsageInfo;
  }

  /** `PUT /api/admin/users/{userId}/plan`: now (the default) or from the next period. */
  async changePlan(userId: number, input: ChangePlanInput): Promise<ChangePlanResult> {
    const path = `/api/admin/users/${segment(userId)}/plan`;
    return (await this.send({ method: "PUT", path, json: input, repeatable: true })).body as ChangePlanResult;
  }

  /** `POST /api/admin/users/{userId}/keys`: the answer is the only one that shows the secret. */
  async createKey(userId: number, input: CreateKeyInput = {}): Promise<CreatedKey> {
    const path = `/api/admin/users/${segment(userId)}/keys`;
    return (await this.send({ method: "POST", path, json: input, repeatable: false })).body as CreatedKey;
  }

  /** `POST /api/admin/keys/{keyId}/revoke`; revoking a revoked key changes nothing. */
  async revokeKey(keyId: number): Promise<void> {
    await this.send({ method: "POST", path: `/api/admin/keys/${segment(keyId)}/revoke`, repeatable: true });
  }

  /**
   * `POST /api/admin/users/{userId}/credits`: purchased credit, and the usage after it,
   * sold at most once per idempotency key (made when left out, and sent again by every
   * retry, so a purchase whose first answer was lost is replayed, never sold twice).
   * `IdempotencyKeyReused` for a key that named another purchase.
   */
  async buyCredits(userId: number, input: BuyCreditsInput): Promise<BuyCreditsOutcome> {
    const { idempotencyKey = randomUUID(), ...json } = input;
    const answer = await this.send({
      method: "POST",
      path: `/api/admin/users/${segment(userId)}/credits`,
      headers: { "idempotency-key": idempotencyKey },
      json,
      repeatable: true,
    });
    return { ...(answer.body as BuyCreditsResult), replayed: replayedOf(answer) };
  }

  /**
   * `POST /api/admin/charges`: charge one operation, atomically and at most once per
   * idempotency key. Without `idempotencyKey` one is made, and every retry of this call
   * sends it again, so a retried charge whose first answer was lost is replayed (the
   * outcome's `replayed`), never charged twice. Refusals are `InsufficientCredit`,
   * `TtpLimitExceeded`, `EditLimitExceeded`; `IdempotencyKeyReused` for a key that
   * named another charge.
   */
  async charge(input: ChargeInput): Promise<ChargeOutcome> {
    const { idempotencyKey = randomUUID(), ...json } = input;
    const answer = await this.send({
      method: "POST",
      path: "/api/admin/charges",
      headers: { "idempotency-key": idempotencyKey },
      json,
      repeatable: true,
    });
    const replayed = answer.headers.get("idempotent-replayed") === "true";
    return { ...(answer.body as ChargeResult), replayed };
  }

  /**
   * `POST /api/admin/charges/{idempotencyKey}/refund`: reverse the charge made with that
   * key. A refund retried after its answer was lost may end in `AlreadyRefunded`: the
   * charge is refunded either way, once.
   */
  async refund(idempotencyKey: string): Promise<ChargeResult> {
    const path = `/api/admin/charges/${segment(idempotencyKey)}/refund`;
    return (await this.send({ method: "POST", path, repeatable: true })).body as ChargeResult;
  }

  /**
   * `POST /api/admin/holds`: reserve credit for a long job, checked and taken as a charge
   * is (same refusals), at most once per idempotency key (made when left out, and sent
   * again by every retry). Released by itself after `ttlSeconds` (default 900) unless
   * settled.
   */
  async hold(input: HoldInput): Promise<HoldOutcome> {
    const { idempotencyKey = randomUUID(), ...json } = input;
    const answer = await this.send({
      method: "POST",
      path: "/api/admin/holds",
      headers: { "idempotency-key": idempotencyKey },
      json,
      repeatable: true,
    });
    return { ...(answer.body as HoldResult), replayed: replayedOf(answer) };
  }

  /** `POST /api/admin/holds/{holdId}/settle`: keep `cost` (at most the held cost), give the rest back. */
  async settleHold(holdId: number, input: SettleHoldInput): Promise<HoldOutcome> {
    const path = `/api/admin/holds/${segment(holdId)}/settle`;
    const answer = await this.send({ method: "POST", path, json: input, repeatable: true });
    return { ...(answer.body as HoldResult), replayed: replayedOf(answer) };
  }

  /** `POST /api/admin/holds/{holdId}/release`: give everything back; the job failed. */
  async releaseHold(holdId: number): Promise<HoldOutcome> {
    const path = `/api/admin/holds/${segment(holdId)}/release`;
    const answer = await this.send({ method: "POST", path, repeatable: true });
    return { ...(answer.body as HoldResult), replayed: replayedOf(answer) };
  }

  /** `GET /api/admin/users/{userId}/holds`: the user's active holds, oldest first. */
  async listHolds(userId: number): Promise<Hold[]> {
    const path = `/api/admin/users/${segment(userId)}/holds`;
    return ((await this.send({ method: "GET", path, repeatable: true })).body as { holds: Hold[] }).holds;
  }

  /**
   * `POST /api/admin/webhooks`: an endpoint for the listed events; the answer is the only
   * one that shows its signing `secret`. Sent once.
   */
  async createWebhook(input: CreateWebhookInput): Promise<CreatedWebhook> {
    const path = "/api/admin/webhooks";
    return (await this.send({ method: "POST", path, json: input, repeatable: false })).body as CreatedWebhook;
  }

  /** `GET /api/admin/webhooks`: every endpoint, without secrets. */
  async listWebhooks(): Promise<WebhookEndpoint[]> {
    const answer = await this.send({ method: "GET", path: "/api/admin/webhooks", repeatable: true });
    return (answer.body as { endpoints: WebhookEndpoint[] }).endpoints;
  }

  /** `DELETE /api/admin/webhooks/{webhookId}`: the endpoint and its delivery log. */
  async deleteWebhook(webhookId: number): Promise<void> {
    await this.send({
      method: "DELETE",
      path: `/api/admin/webhooks/${segment(webhookId)}`,
      repeatable: true,
    });
  }

  /** `POST /api/admin/webhooks/{webhookId}/rotate`: a new signing secret, shown once. */
  async rotateWebhookSecret(webhookId: number): Promise<WebhookSecret> {
    const path = `/api/admin/webhooks/${segment(webhookId)}/rotate`;
    return (await this.send({ method: "POST", path, repeatable: false })).body as WebhookSecret;
  }

  /** `GET /api/admin/webhooks/{webhookId}/deliveries`: the delivery log, newest first. */
  async listWebhookDeliveries(webhookId: number): Promise<WebhookDelivery[]> {
    const path = `/api/admin/webhooks/${segment(webhookId)}/deliveries`;
    const answer = await this.send({ method: "GET", path, repeatable: true });
    return (answer.body as { deliveries: WebhookDelivery[] }).deliveries;
  }

  /** `POST .../deliveries/{deliveryId}/redeliver`: sent again now, with the same webhook-id. */
  async redeliverWebhook(webhookId: number, deliveryId: number): Promise<WebhookDelivery> {
    const path = `/api/admin/webhooks/${segment(webhookId)}/deliveries/${segment(deliveryId)}/redeliver`;
    return (await this.send({ method: "POST", path, repeatable: true })).body as WebhookDelivery;
  }

  /** `call`, with the admin token. */
  private send(call: Call): Promise<Answer> {
    return this.transport.call({ ...call, headers: { ...call.headers, ...this.authorization } });
  }
}

/** Whether `answer` is the first answer of the same call, replayed by the server. */
function replayedOf(answer: Answer): boolean {
  return answer.headers.get("idempotent-replayed") === "true";
}
