/**
 * The client of the flamel-usage service for Node back ends (Express, NestJS):
 * `UsageClient` reads a customer's usage with the customer's API key or session cookie,
 * `AdminClient` calls the operator API with the admin token and charges idempotently.
 * Every failure is a `FlamelError` (see `errors.ts` for the tree). No runtime dependency:
 * Node 20's own `fetch`.
 */
export { AdminClient, type AdminClientOptions } from "./admin.js";
export * from "./errors.js";
export type { ClientOptions } from "./transport.js";
export type * from "./types.js";
export { UsageClient, type UsageClientOptions } from "./usage.js";
export { VERSION } from "./version.js";
