/**
 * Every failure of a call is a `FlamelError`; a back end branches on its class.
 *
 *     FlamelError                  .status, .reason (the envelope's `data`), .retryAfter
 *     ├── BadRequest               400
 *     │   ├── InvalidIdempotencyKey
 *     │   └── UnknownKind
 *     ├── AuthenticationError      401
 *     │   ├── WrongApiKey, ApiKeyExpired, AdminUnauthorized
 *     ├── InsufficientCredit       402: the charge does not fit; nothing changed
 *     ├── PermissionDenied         403
 *     │   ├── NotLoggedIn, AdminDisabled
 *     ├── NotFound                 404
 *     │   ├── UserNotFound, PlanNotFound, KeyNotFound, ChargeNotFound, HoldNotFound
 *     ├── Conflict                 409
 *     │   ├── IdempotencyKeyReused, AlreadyRefunded, NotRefundable, UserExists, TooManyKeys,
 *     │   │   HoldNotActive (the hold was settled, released or has expired)
 *     ├── LimitExceeded            429 a plan limit of the period: TtpLimitExceeded, EditLimitExceeded
 *     ├── RateLimited              429 too many requests: wait .retryAfter seconds
 *     ├── ServerError              5xx, the envelope's or a proxy's
 *     │   └── ServiceUnavailable   503 service_unavailable: the database did not answer
 *     ├── InvalidResponse          an answer that is not the contract's (.body, an excerpt)
 *     └── TransportError           no answer at all (.cause)
 *
 * The server's reasons (its `core/errors.py` REASONS) map to the class named after them;
 * a reason this client does not know falls back to the class of its status, so a new
 * reason on the server never breaks a caller's `instanceof` of a family.
 */

export interface ErrorDetails {
  status?: number | undefined;
  reason?: string | undefined;
  retryAfter?: number | undefined;
  cause?: unknown;
}

export class FlamelError extends Error {
  /** The HTTP status of the answer; undefined when there was none. */
  readonly status: number | undefined;
  /** The envelope's snake_case `data` (`"insufficient_credit"`...), when there was one. */
  readonly reason: string | undefined;
  /** The server's `Retry-After`, in seconds, when it sent one. */
  readonly retryAfter: number | undefined;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.status = details.status;
    this.reason = details.reason;
    this.retryAfter = details.retryAfter;
  }
}

export class BadRequest extends FlamelError {}
export class InvalidIdempotencyKey extends BadRequest {}
export class UnknownKind extends BadRequest {}

export class AuthenticationError extends FlamelError {}
export class WrongApiKey extends AuthenticationError {}
export class ApiKeyExpired extends AuthenticationError {}
export class AdminUnauthorized extends AuthenticationError {}

export class InsufficientCredit extends FlamelError {}

export class PermissionDenied extends FlamelError {}
export class NotLoggedIn extends PermissionDenied {}
export class AdminDisabled extends PermissionDenied {}

export class NotFound extends FlamelError {}
export class UserNotFound extends NotFound {}
export class PlanNotFound extends NotFound {}
export class KeyNotFound extends NotFound {}
export class ChargeNotFound extends NotFound {}
export class HoldNotFound extends NotFound {}

export class Conflict extends FlamelError {}
export class IdempotencyKeyReused extends Conflict {}
export class AlreadyRefunded extends Conflict {}
export class NotRefundable extends Conflict {}
export class UserExists extends Conflict {}
export class TooManyKeys extends Conflict {}
export class HoldNotActive extends Conflict {}

export class LimitExceeded extends FlamelError {}
export class TtpLimitExceeded extends LimitExceeded {}
export class EditLimitExceeded extends LimitExceeded {}

export class RateLimited extends FlamelError {}

export class ServerError extends FlamelError {}
export class ServiceUnavailable extends ServerError {}

/** An answer that is not the contract's: not JSON, an HTML page, no error envelope. */
export class InvalidResponse extends FlamelError {
  static readonly EXCERPT = 500;
  /** The start of the body as text. */
  readonly body: string;

  constructor(message: string, body: string, details: ErrorDetails = {}) {
    super(message, details);
    this.body = body.slice(0, InvalidResponse.EXCERPT);
  }
}

/** No answer: the connection was refused or dropped, or the attempt timed out. */
export class TransportError extends FlamelError {}

type ErrorClass = new (message: string, details?: ErrorDetails) => FlamelError;

/** The class of each reason this client names, with the status the server sends it with. */
export const REASON_ERRORS: Readonly<Record<string, readonly [number, ErrorClass]>> = {
  bad_request: [400, BadRequest],
  invalid_idempotency_key: [400, InvalidIdempotencyKey],
  unknown_kind: [400, UnknownKind],
  wrong_api_key: [401, WrongApiKey],
  api_key_expired: [401, ApiKeyExpired],
  admin_unauthorized: [401, AdminUnauthorized],
  insufficient_credit: [402, InsufficientCredit],
  not_logged_in: [403, NotLoggedIn],
  admin_disabled: [403, AdminDisabled],
  user_not_found: [404, UserNotFound],
  plan_not_found: [404, PlanNotFound],
  key_not_found: [404, KeyNotFound],
  charge_not_found: [404, ChargeNotFound],
  hold_not_found: [404, HoldNotFound],
  idempotency_key_reused: [409, IdempotencyKeyReused],
  already_refunded: [409, AlreadyRefunded],
  not_refundable: [409, NotRefundable],
  hold_not_active: [409, HoldNotActive],
  user_exists: [409, UserExists],
  too_many_keys: [409, TooManyKeys],
  limit_exceeded: [429, LimitExceeded],
  ttp_limit_exceeded: [429, TtpLimitExceeded],
  edit_limit_exceeded: [429, EditLimitExceeded],
  too_many_requests: [429, RateLimited],
  service_unavailable: [503, ServiceUnavailable],
};

/** The family of each status, for a reason without a class of its own. */
const STATUS_ERRORS: Readonly<Record<number, ErrorClass>> = {
  400: BadRequest,
  401: AuthenticationError,
  402: InsufficientCredit,
  403: PermissionDenied,
  404: NotFound,
  409: Conflict,
  429: RateLimited,
};

function isEnvelope(body: unknown, status: number): body is { data: string; message?: unknown } {
  if (typeof body !== "object" || body === null) {
    return false;
  }
  const fields = body as Record<string, unknown>;
  return fields["success"] === false && fields["code"] === status && typeof fields["data"] === "string";
}

function classOf(status: number, reason: string): ErrorClass {
  const named = Object.hasOwn(REASON_ERRORS, reason) ? REASON_ERRORS[reason] : undefined;
  if (named !== undefined && named[0] === status) {
    return named[1];
  }
  return STATUS_ERRORS[status] ?? (status >= 500 ? ServerError : FlamelError);
}

/**
 * The typed error for an error answer: `body` is its parsed JSON (undefined when it was
 * not JSON) and `text` the body as sent. The one place that reads the error envelope.
 */
export function errorFromAnswer(
  status: number,
  body: unknown,
  text: string,
  retryAfter?: number,
): FlamelError {
  if (isEnvelope(body, status)) {
    const detail = typeof body.message === "string" ? `: ${body.message}` : "";
    const ErrorType = classOf(status, body.data);
    return new ErrorType(`${status} ${body.data}${detail}`, { status, reason: body.data, retryAfter });
  }
  if (status >= 500) {
    return new ServerError(`${status} from the server, without the error envelope`, { status, retryAfter });
  }
  return new InvalidResponse(`${status} without the error envelope`, text, { status, retryAfter });
}
