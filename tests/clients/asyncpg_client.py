"""asyncpg against Weir: prepared statements with parameters, binary results of every
column type the views have, the types it learns from the server, and a pool handing a
connection back (its reset runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
RESET ALL;`).

Run by tests/integration/clients.rs with WEIR_PG_PORT set, after it created the views `failures` and
`worst` from tests/data/logins.jsonl. Exits non-zero on the first wrong value.
"""

import asyncio
import datetime
import os

import asyncpg

DSN = f"postgresql://analyst@127.0.0.1:{os.environ['WEIR_PG_PORT']}/weir"


def check(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


async def queries(conn):
    rows = await conn.fetch("SELECT user_name, n FROM failures ORDER BY user_name")
    check([tuple(r) for r in rows], [("alice", 4), ("bob", 2), ("carol", 1)], "fetch")
    stmt = await conn.prepare("SELECT worst, first_seen FROM worst WHERE user_name = $1")
    check(
        [(a.name, a.type.name) for a in stmt.get_attributes()],
        [("worst", "float8"), ("first_seen", "timestamp")],
        "result types of a prepared statement",
    )
    check([t.name for t in stmt.get_parameters()], ["text"], "parameter types")
    check(
        tuple(await stmt.fetchrow("alice")),
        (40.0, datetime.datetime(2026, 1, 1, 0, 0, 5)),
        "prepared alice",
    )
    check(
        tuple(await stmt.fetchrow("carol")),
        (50.0, datetime.datetime(2026, 1, 1, 0, 1, 30)),
        "prepared carol",
    )
    check(await conn.fetchval("SELECT n FROM failures WHERE n > $1 AND user_name = $2", 1, "bob"), 2, "two parameters")
    row = await conn.fetchrow(
        "SELECT TRUE AS b, NULL::BIGINT AS missing, INTERVAL '90 minutes' AS i, 'x'::TEXT AS t"
    )
    check(tuple(row), (True, None, datetime.timedelta(minutes=90), "x"), "literal types")
    async with conn.transaction():
        check(await conn.fetchval("SELECT count(*) FROM failures"), 3, "in a transaction")


async def pool():
    async with asyncpg.create_pool(DSN, min_size=1, max_size=1) as p:
        for _ in range(3):  # the same connection, reset between each use
            async with p.acquire() as conn:
                await conn.execute("SET application_name = 'asyncpg-pool'")
                check(await conn.fetchval("SELECT n FROM failures WHERE user_name = $1", "alice"), 4, "pooled query")
            async with p.acquire() as conn:
                check(await conn.fetchval("SHOW application_name"), "", "RESET ALL by the pool")


async def main():
    conn = await asyncpg.connect(DSN)
    check(conn.get_server_version()[:2], (15, 0), "server version")
    await queries(conn)
    await conn.close()
    await pool()
    print("asyncpg: ok")


if __name__ == "__main__":
    asyncio.run(main())
