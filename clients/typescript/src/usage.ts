import { type ClientOptions, Transport } from "./transport.js";
import type { UsageCredentials, UsageInfo } from "./types.js";

export interface UsageClientOptions extends ClientOptions {
  /** The session cookie's name, as the platform's express-session sets it; default `connect.sid`. */
  sessionCookieName?: string;
}

/** The value of cookie `name` in a Cookie header (the first, as express-session reads it). */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const pair of (header ?? "").split(";")) {
    const equals = pair.indexOf("=");
    if (equals !== -1 && pair.slice(0, equals).trim() === name) {
      return pair.slice(equals + 1).trim();
    }
  }
  return undefined;
}

/**
 * Reads a customer's usage with the customer's own credentials: an API key, or the
 * session cookie of the browser request a back end is answering. One client serves
 * every customer: the credentials go with each call.
 */
export class UsageClient {
  private readonly transport: Transport;
  private readonly sessionCookieName: string;

  constructor(options: UsageClientOptions) {
    this.transport = new Transport(options);
    this.sessionCookieName = options.sessionCookieName ?? "connect.sid";
  }

  /**
   * `GET /api/users/me/usage`. With `{ cookie: req.headers.cookie }` only the session
   * cookie is forwarded, never the browser's other cookies; without one, the server
   * answers `NotLoggedIn`. Retried on transport errors and 502-504.
   */
  async usage(credentials: UsageCredentials): Promise<UsageInfo> {
    const answer = await this.transport.call({
      method: "GET",
      path: "/api/users/me/usage",
      headers: this.credentialHeaders(credentials),
      repeatable: true,
    });
    return answer.body as UsageInfo;
  }

  private credentialHeaders(credentials: UsageCredentials): Record<string, string> {
    if (credentials.apiKey !== undefined) {
      return { "x-api-key": credentials.apiKey };
    }
    const session = cookieValue(credentials.cookie, this.sessionCookieName);
    return session === undefined ? {} : { cookie: `${this.sessionCookieName}=${session}` };
  }
}
