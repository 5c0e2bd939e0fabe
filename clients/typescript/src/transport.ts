import { FlamelError, InvalidResponse, TransportError, errorFromAnswer } from "./errors.js";
import { VERSION } from "./version.js";

export interface ClientOptions {
  /** Where the service answers, such as `http://flamel-usage:4010` (a path prefix is kept). */
  baseUrl: string;
  /** Longest wait for one attempt, in milliseconds; default 10 000. */
  timeoutMs?: number;
  /** Further attempts of a call that is safe to repeat; default 2, 0 turns retries off. */
  retries?: number;
  /** Wait before the first retry, in milliseconds, doubled for each next one; default 200. */
  backoffMs?: number;
  /** The `fetch` to send with; default Node's own. Give another to add a proxy, or in tests. */
  fetch?: typeof fetch;
}

/** One request of a call, tried once or, when `repeatable`, up to `retries` more times. */
export interface Call {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** The path, its parameters already encoded. */
  path: string;
  headers?: Record<string, string>;
  json?: unknown;
  /** True when sending it twice applies it at most once: only such a call is retried. */
  repeatable: boolean;
}

export interface Answer {
  /** The parsed JSON object; undefined for `204 No Content`. */
  body: unknown;
  headers: Headers;
}

/** Answers a proxy or the server gives while the service is briefly unable to: worth a retry. */
const TRANSIENT_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);
/** A `Retry-After` longer than this is not waited for: the error goes to the caller at once. */
const LONGEST_WAIT_MS = 30_000;
const USER_AGENT = `flamel-usage-typescript/${VERSION}`;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `Retry-After` in seconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterSeconds(headers: Headers): number | undefined {
  const value = headers.get("retry-after")?.trim();
  if (!value) {
    return undefined;
  }
  if (/^\d+$/.test(value)) {
    return Number(value);
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** What went wrong on the wire, for a message: Node's fetch hides it in `cause`. */
function describe(error: unknown): string {
  if (error instanceof Error && error.name === "TimeoutError") {
    return "timed out";
  }
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause instanceof Error) {
    return `${error instanceof Error ? error.message : String(error)}: ${cause.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, not ${value}`);
  }
  return value;
}

/** Sends calls: timeouts, bounded retries of what is safe to repeat, answers into errors. */
export class Transport {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly send: typeof fetch;

  constructor(options: ClientOptions) {
    const base = new URL(options.baseUrl);
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError(`baseUrl must be http or https, not ${base.protocol}`);
    }
    if (base.search || base.hash) {
      throw new TypeError("baseUrl must have no query nor fragment: paths are appended to it");
    }
    this.baseUrl = base.href.replace(/\/+$/, "");
    this.timeoutMs = nonNegative("timeoutMs", options.timeoutMs ?? 10_000);
    this.retries = Math.floor(nonNegative("retries", options.retries ?? 2));
    this.backoffMs = nonNegative("backoffMs", options.backoffMs ?? 200);
    this.send = options.fetch ?? fetch;
  }

  async call(call: Call): Promise<Answer> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.attempt(call);
      } catch (error) {
        const wait = this.waitBeforeRetry(call, error, attempt);
        if (wait === undefined) {
          throw error;
        }
        await sleep(wait);
      }
    }
  }

  /** How long to wait before trying `call` again, or undefined when it must not be. */
  private waitBeforeRetry(call: Call, error: unknown, attempt: number): number | undefined {
    if (!call.repeatable || attempt >= this.retries || !(error instanceof FlamelError)) {
      return undefined;
    }
    const transient = error instanceof TransportError || TRANSIENT_STATUSES.has(error.status ?? 0);
    if (!transient) {
      return undefined;
    }
    const wait = error.retryAfter === undefined ? this.backoffMs * 2 ** attempt : error.retryAfter * 1000;
    return wait <= LONGEST_WAIT_MS ? wait : undefined;
  }

  private async attempt(call: Call): Promise<Answer> {
    // Built before sending, so that a header value fetch cannot send is the caller's
    // TypeError at once, never a TransportError that would be retried.
    const headers = new Headers({ accept: "application/json", "user-agent": USER_AGENT, ...call.headers });
    if (call.json !== undefined) {
      headers.set("content-type", "application/json");
    }
    const body = call.json === undefined ? null : JSON.stringify(call.json);
    let response: Response;
    let text: string;
    try {
      response = await this.send(this.baseUrl + call.path, {
        method: call.method,
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw new TransportError(`${call.method} ${call.path}: no answer (${describe(error)})`, {
        cause: error,
      });
    }
    const parsed = parseJson(text);
    if (!response.ok) {
      throw errorFromAnswer(response.status, parsed, text, retryAfterSeconds(response.headers));
    }
    if (response.status === 204) {
      return { body: undefined, headers: response.headers };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new InvalidResponse(`${response.status} without a JSON object`, text, {
        status: response.status,
      });
    }
    return { body: parsed, headers: response.headers };
  }
}
