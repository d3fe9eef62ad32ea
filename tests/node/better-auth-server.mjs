// A real Better Auth server for the taskstore-mcp test suite.
//
// The Python tests start this script (see tests/support/better_auth.py), sign
// users up through Better Auth's own HTTP API, and check that our MCP server
// accepts the session tokens, JWTs and OAuth access tokens it issues.
//
// Environment:
//   BA_DATABASE_URL     PostgreSQL URL of a database this run may migrate (required)
//   BA_PORT             port to listen on, on 127.0.0.1 (required)
//   BETTER_AUTH_SECRET  signing and encryption secret, 32+ characters (required)
//   BETTER_AUTH_URL     public base URL, e.g. http://127.0.0.1:PORT (default: that)
//   BA_MCP_RESOURCE     resource URL of the MCP server that OAuth access tokens
//                       are bound to (default: BETTER_AUTH_URL + "/mcp")
//   BA_JWT_EXPIRATION   lifetime of /api/auth/token JWTs, e.g. "15m" or "5s"
//                       (default: Better Auth's own, 15m)
//   BA_ACCESS_TOKEN_TTL lifetime of OAuth access tokens in seconds
//                       (default: Better Auth's own, 3600)
//   BA_MCP_SCOPES       space-separated scopes the MCP plugin grants
//                       (default: "openid profile email offline_access")
//
// When the schema is migrated and the socket is listening, it prints exactly
// one line, "READY <base url>", to stdout. Everything else goes to stderr.

import http from "node:http";
import pg from "pg";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt } from "better-auth/plugins";
import { mcp } from "@better-auth/mcp";

// Telemetry is opt-in in 1.7, but a test fixture must never send any, so it is
// forced off here as well as in the options below. Better Auth reads the
// variable when betterAuth() builds its context, after this line has run.
process.env.BETTER_AUTH_TELEMETRY = "0";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`better-auth-server: ${name} is missing; see the environment list at the top of this file`);
    process.exit(2);
  }
  return value;
}

const databaseUrl = required("BA_DATABASE_URL");
const port = Number.parseInt(required("BA_PORT"), 10);
const secret = required("BETTER_AUTH_SECRET");
const baseURL = (process.env.BETTER_AUTH_URL || `http://127.0.0.1:${port}`).replace(/\/+$/, "");
const mcpResource = process.env.BA_MCP_RESOURCE || `${baseURL}/mcp`;
const jwtExpiration = process.env.BA_JWT_EXPIRATION || undefined;
const mcpScopes = (process.env.BA_MCP_SCOPES || "openid profile email offline_access").split(/\s+/).filter(Boolean);
const accessTokenTtl = process.env.BA_ACCESS_TOKEN_TTL
  ? Number.parseInt(process.env.BA_ACCESS_TOKEN_TTL, 10)
  : undefined;
process.env.BETTER_AUTH_URL = baseURL;

// Every address this server may hand out or redirect to must stay on the
// loopback interface.
const baseHost = new URL(baseURL).hostname;
if (!["127.0.0.1", "localhost", "[::1]"].includes(baseHost)) {
  console.error(`better-auth-server: invalid BETTER_AUTH_URL ${baseURL}: expected a loopback host such as 127.0.0.1`);
  process.exit(2);
}

const databaseHost = new URL(databaseUrl).hostname.replace(/^\[|\]$/g, "");
if (!["127.0.0.1", "localhost", "::1", ""].includes(databaseHost)) {
  console.error(`better-auth-server: invalid BA_DATABASE_URL host ${databaseHost}: expected a loopback address`);
  process.exit(2);
}

const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });

const options = {
  appName: "taskstore-mcp test",
  baseURL,
  basePath: "/api/auth",
  secret,
  database: pool,
  trustedOrigins: [baseURL, new URL(mcpResource).origin],
  telemetry: { enabled: false },
  // Tests sign up many users in a burst from one address.
  rateLimit: { enabled: false },
  emailAndPassword: {
    enabled: true,
    requireEmailVerification: false,
    autoSignIn: true,
  },
  // POST /api/auth/delete-user with the user's password deletes at once.
  user: { deleteUser: { enabled: true } },
  plugins: [
    jwt(jwtExpiration ? { jwt: { expirationTime: jwtExpiration } } : undefined),
    bearer(),
    mcp({
      resource: mcpResource,
      // Neither page exists. A headless client that already has a session
      // never reaches the login page, and it completes the consent step by
      // POSTing to /oauth2/consent itself.
      loginPage: `${baseURL}/login`,
      consentPage: `${baseURL}/consent`,
      scopes: mcpScopes,
      ...(accessTokenTtl ? { accessTokenExpiresIn: accessTokenTtl } : {}),
      // Lets an MCP client such as the Inspector register itself (RFC 7591)
      // without a Better Auth session, as MCP clients expect to.
      allowDynamicClientRegistration: true,
      allowUnauthenticatedClientRegistration: true,
    }),
  ],
};

async function migrate() {
  const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(options);
  const created = toBeCreated.map((t) => t.table);
  const added = toBeAdded.map((t) => t.table);
  if (created.length || added.length) {
    console.error(
      `better-auth-server: migrating (create: ${created.join(", ") || "-"}; alter: ${added.join(", ") || "-"})`,
    );
    await runMigrations();
  }
}

async function main() {
  // Migrate before betterAuth() is called: it starts its own initialisation
  // (schema check, OAuth resource seeding) at once and needs the tables.
  await migrate();
  const auth = betterAuth(options);
  await auth.$context;

  const authHandler = toNodeHandler(auth);
  const server = http.createServer((req, res) => {
    const path = (req.url || "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    // The MCP plugin serves /.well-known/oauth-protected-resource and the
    // OAuth provider its authorization-server metadata through the handler's
    // onRequest hooks, so the well-known paths go to Better Auth as well.
    if (path.startsWith("/api/auth") || path.startsWith("/.well-known/")) {
      authHandler(req, res).catch((err) => {
        console.error("better-auth-server: handler error", err);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  });

  let closing = false;
  const shutdown = (signal) => {
    if (closing) return;
    closing = true;
    console.error(`better-auth-server: ${signal}, shutting down`);
    server.close();
    server.closeAllConnections?.();
    pool.end().finally(() => process.exit(0));
    // If the pool hangs, do not outlive the test that started us.
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));

  server.listen(port, "127.0.0.1", () => {
    process.stdout.write(`READY ${baseURL}\n`);
  });
}

main().catch((err) => {
  console.error("better-auth-server: failed to start", err);
  process.exit(1);
});
