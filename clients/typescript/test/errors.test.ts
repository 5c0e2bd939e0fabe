import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import {
  AuthenticationError,
  BadRequest,
  Conflict,
  FlamelError,
  InsufficientCredit,
  InvalidResponse,
  NotFound,
  PermissionDenied,
  REASON_ERRORS,
  RateLimited,
  LimitExceeded,
  ServerError,
  VERSION,
  errorFromAnswer,
} from "flamel-usage-client";
import { server } from "./support.js";

/** The class every error of a status must be, whatever its reason. */
const FAMILIES: Record<number, abstract new (...args: never[]) => FlamelError> = {
  400: BadRequest,
  401: AuthenticationError,
  402: InsufficientCredit,
  403: PermissionDenied,
  404: NotFound,
  409: Conflict,
  429: FlamelError,
  500: ServerError,
  503: ServerError,
};

function envelope(status: number, reason: string): unknown {
  return { success: false, code: status, data: reason };
}

test("every reason the server sends becomes an error of its status's family", () => {
  for (const [reason, status] of Object.entries(server.reasons)) {
    const error = errorFromAnswer(status, envelope(status, reason), "");
    const family = FAMILIES[status] ?? FlamelError;
    assert.ok(error instanceof family, `${reason} (${status}) became ${error.name}`);
    assert.equal(error.status, status);
    assert.equal(error.reason, reason);
    if (status === 429) {
      assert.ok(error instanceof RateLimited || error instanceof LimitExceeded, reason);
    }
  }
});

test("every reason this client names is one the server sends, with the same status", () => {
  for (const [reason, [status, ErrorType]] of Object.entries(REASON_ERRORS)) {
    assert.equal(server.reasons[reason], status, `${reason} is not the server's ${status}`);
    assert.ok(errorFromAnswer(status, envelope(status, reason), "") instanceof ErrorType, reason);
  }
});

test("a reason with another status than the client's table falls back to that status's family", () => {
  const error = errorFromAnswer(404, envelope(404, "insufficient_credit"), "");
  assert.ok(error instanceof NotFound && !(error instanceof InsufficientCredit));
});

test("the envelope's message is in the error's", () => {
  const error = errorFromAnswer(
    402,
    { ...(envelope(402, "insufficient_credit") as object), message: "short by 2" },
    "",
  );
  assert.equal(error.message, "402 insufficient_credit: short by 2");
  assert.equal(error.name, "InsufficientCredit");
});

test("an answer without the envelope is InvalidResponse, or ServerError for a 5xx", () => {
  const html = "<html>Bad gateway</html>";
  const proxy = errorFromAnswer(502, undefined, html);
  assert.ok(proxy instanceof ServerError);
  assert.equal(proxy.status, 502);
  assert.equal(proxy.reason, undefined);
  const odd = errorFromAnswer(418, { success: false, code: 400, data: "bad_request" }, "x".repeat(2000));
  assert.ok(odd instanceof InvalidResponse);
  assert.equal(odd.body.length, InvalidResponse.EXCERPT);
});

test("VERSION is package.json's", async () => {
  const manifest = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  assert.equal(VERSION, manifest.version);
});
