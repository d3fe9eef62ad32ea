// Creates or drops a scratch PostgreSQL database for the Better Auth fixture.
//
//   node pg-database.mjs create postgresql://postgres@127.0.0.1:5432/ba_xyz
//   node pg-database.mjs drop   postgresql://postgres@127.0.0.1:5432/ba_xyz
//
// It connects to the server's "postgres" maintenance database with the same
// credentials. Only names starting with "ba_" are accepted, so that a wrong
// URL in a test cannot drop a database the fixture did not make. "create" does
// nothing when the database exists. "drop" terminates the database's
// connections first, because a killed Better Auth process may leave pooled
// connections behind for a moment.

import pg from "pg";

const [action, url] = process.argv.slice(2);
if (!["create", "drop"].includes(action) || !url) {
  console.error("usage: node pg-database.mjs create|drop POSTGRES_URL");
  process.exit(2);
}

const target = new URL(url);
const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
if (!/^ba_[a-z0-9_]{1,59}$/.test(name)) {
  console.error(`pg-database: invalid database name ${JSON.stringify(name)}: expected ba_[a-z0-9_]+`);
  process.exit(2);
}
const host = target.hostname.replace(/^\[|\]$/g, "");
if (!["127.0.0.1", "localhost", "::1", ""].includes(host)) {
  console.error(`pg-database: invalid host ${target.hostname}: expected a loopback address`);
  process.exit(2);
}

const admin = new URL(url);
admin.pathname = "/postgres";
const client = new pg.Client({ connectionString: admin.toString() });
await client.connect();
try {
  // CREATE and DROP DATABASE take no bind parameters. The name matched a
  // strict pattern above, so quoting it as an identifier is safe.
  const ident = `"${name}"`;
  if (action === "create") {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${ident}`);
  } else {
    await client.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [name],
    );
    await client.query(`DROP DATABASE IF EXISTS ${ident}`);
  }
} finally {
  await client.end();
}
