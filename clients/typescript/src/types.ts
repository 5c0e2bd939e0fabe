/**
 * The shapes the client sends and returns, named after the OpenAPI document's schemas
 * (`openapi.ts`, generated from `GET /api-json`): a change of the served document shows
 * here, at compile time, once the types are regenerated.
 */
import type { components } from "./openapi.js";

type Schemas = components["schemas"];

/** `GET /api/users/me/usage`'s answer, exactly as the contract has it. */
export type UsageInfo = Schemas["UsageInfoDto"];

/**
 * A platform user id (`externalId`) is being added to the server: sent when given, shown
 * when the server answers it. Once the document declares it, the generated types carry
 * it and these additions are redundant (and harmless).
 */
interface ExternalId {
  externalId?: string | null;
}
export type CreateUserInput = Schemas["CreateUserRequest"] & ExternalId;
export type User = Schemas["User"] & ExternalId;

export type ChangePlanInput = Schemas["ChangePlanRequest"];
export type ChangePlanResult = Schemas["ChangePlanResponse"];
export type CreateKeyInput = Schemas["CreateKeyRequest"];
export type CreatedKey = Schemas["CreatedKey"];
export type BuyCreditsInput = Schemas["BuyCreditsRequest"] & {
  /**
   * Names this purchase: a retry with the same key sells once. When left out, the client
   * makes one (a random UUID) and reuses it for its own retries.
   */
  idempotencyKey?: string;
};
export type BuyCreditsResult = Schemas["BuyCreditsResponse"];

export interface BuyCreditsOutcome extends BuyCreditsResult {
  /**
   * True when the server answered with the first answer for this idempotency key (an
   * earlier attempt had bought): nothing was sold by this one.
   */
  replayed: boolean;
}
export type Charge = Schemas["Charge"];
export type ChargeResult = Schemas["ChargeResult"];

export type CreateWebhookInput = Schemas["CreateWebhookRequest"];
export type CreatedWebhook = Schemas["CreatedWebhookEndpoint"];
export type WebhookEndpoint = Schemas["WebhookEndpoint"];
export type WebhookSecret = Schemas["WebhookSecret"];
export type WebhookDelivery = Schemas["WebhookDelivery"];

export type ChargeInput = Schemas["CreateChargeRequest"] & {
  /**
   * Names this charge: a retry with the same key is applied once. When left out, the
   * client makes one (a random UUID) and reuses it for its own retries.
   */
  idempotencyKey?: string;
};

export interface ChargeOutcome extends ChargeResult {
  /**
   * True when the server answered with the first answer for this idempotency key (an
   * earlier attempt had charged): nothing was charged by this one.
   */
  replayed: boolean;
}

export type Hold = Schemas["Hold"];
export type HoldResult = Schemas["HoldResult"];
export type SettleHoldInput = Schemas["SettleHoldRequest"];

export type HoldInput = Schemas["CreateHoldRequest"] & {
  /** Names this hold, as a charge's key does; made (a random UUID) when left out. */
  idempotencyKey?: string;
};

export interface HoldOutcome extends HoldResult {
  /**
   * True when the server answered with the first answer of this call (the same key, or
   * the same settle or release again): nothing changed this time.
   */
  replayed: boolean;
}

/** Whose usage to read: an API key, or the Cookie header of the browser's request. */
export type UsageCredentials =
  { apiKey: string; cookie?: never } | { cookie: string | undefined; apiKey?: never };
