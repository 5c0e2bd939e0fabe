/**
 * What the tests share: the server they run against (from the environment that
 * tests/test_typescript_client.py sets), clients of it, and fresh users.
 */
import { randomUUID } from "node:crypto";
import {
  AdminClient,
  type ClientOptions,
  UsageClient,
  type UsageClientOptions,
  type User,
} from "flamel-usage-client";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/test_typescript_client.py`);
  }
  return value;
}

export const server = {
  url: required("FLAMEL_TEST_URL"),
  token: required("FLAMEL_TEST_ADMIN_TOKEN"),
  /** A plan of 10 credits a month, 2 TTP and 1 edit per period. */
  smallPlan: required("FLAMEL_TEST_SMALL_PLAN"),
  /** A plan of 1,000 credits a month, no count limits. */
  largePlan: required("FLAMEL_TEST_LARGE_PLAN"),
  /** The server's refusal reasons, `{reason: status}` (core/errors.py REASONS). */
  reasons: JSON.parse(required("FLAMEL_TEST_REASONS")) as Record<string, number>,
};

/** Fast retries, so that tests of the retry path do not wait. */
const QUICK: Omit<ClientOptions, "baseUrl"> = { backoffMs: 10 };

export function admin(options: Partial<ClientOptions> = {}): AdminClient {
  return new AdminClient({ baseUrl: server.url, token: server.token, ...QUICK, ...options });
}

export function reader(options: Partial<UsageClientOptions> = {}): UsageClient {
  return new UsageClient({ baseUrl: server.url, ...QUICK, ...options });
}

export function uniqueEmail(): string {
  return `ts-${randomUUID()}@example.com`;
}

export async function newUser(plan: string = server.largePlan, password?: string): Promise<User> {
  return admin().createUser({ email: uniqueEmail(), plan, ...(password === undefined ? {} : { password }) });
}

/** What one call to `fetch` was asked to send. */
export interface Sent {
  url: string;
  method: string;
  headers: Headers;
}

/**
 * Node's fetch, recording every request; `drop(url)` decides, once the server has
 * answered a request in full, whether to throw instead of returning the answer, as a
 * connection that dies on the way back would.
 */
export function recordingFetch(drop: (url: string) => boolean = () => false): {
  fetch: typeof fetch;
  sent: Sent[];
} {
  const sent: Sent[] = [];
  const wrapped: typeof fetch = async (input, init) => {
    const url = String(input);
    sent.push({ url, method: init?.method ?? "GET", headers: new Headers(init?.headers) });
    const response = await fetch(input, init);
    if (drop(url)) {
      await response.arrayBuffer();
      throw new TypeError("fetch failed", { cause: new Error("other side closed") });
    }
    return response;
  };
  return { fetch: wrapped, sent };
}
