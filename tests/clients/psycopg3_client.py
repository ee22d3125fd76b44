"""psycopg 3 against Weir: text and binary results, server-side prepared statements,
`conn.transaction()` (with a nested savepoint), settings of the connection as SHOW and
current_setting() see them, and DISCARD ALL dropping prepared statements.

Run by tests/integration/clients.rs with WEIR_PG_PORT set, after it created the views `failures` and
`worst` from tests/data/logins.jsonl. Exits non-zero on the first wrong value.
"""

import datetime
import os

import psycopg

DSN = f"host=127.0.0.1 port={os.environ['WEIR_PG_PORT']} user=analyst dbname=weir"
FAILURES = [("alice", 4), ("bob", 2), ("carol", 1)]
WORST = [
    ("alice", 40.0, datetime.datetime(2026, 1, 1, 0, 0, 5)),
    ("bob", 25.0, datetime.datetime(2026, 1, 1, 0, 0, 30)),
    ("carol", 50.0, datetime.datetime(2026, 1, 1, 0, 1, 30)),
]


def check(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def text_and_binary(conn):
    sql = "SELECT user_name, n FROM failures ORDER BY user_name"
    check(conn.execute(sql).fetchall(), FAILURES, "text rows")
    check(conn.execute(sql, binary=True).fetchall(), FAILURES, "binary rows")
    sql = "SELECT user_name, worst, first_seen FROM worst ORDER BY user_name"
    check(conn.execute(sql).fetchall(), WORST, "text doubles and timestamps")
    check(conn.execute(sql, binary=True).fetchall(), WORST, "binary doubles and timestamps")
    row = conn.execute(
        "SELECT 'a'::TEXT, NULL::BIGINT, TRUE, 2.5::DOUBLE PRECISION, INTERVAL '90 minutes'"
    ).fetchone()
    check(row, ("a", None, True, 2.5, datetime.timedelta(minutes=90)), "literal types")


def prepared(conn):
    sql = "SELECT n FROM failures WHERE user_name = %s"
    with conn.cursor() as cur:
        # prepare=True makes psycopg Parse a named statement once and Bind it each time.
        for name, n in FAILURES:
            check(cur.execute(sql, (name,), prepare=True).fetchone(), (n,), f"prepared {name}")
        for name, n in FAILURES:
            cur.execute(sql, (name,), prepare=True, binary=True)
            check(cur.fetchone(), (n,), f"prepared binary {name}")
    rows = conn.execute(
        "SELECT user_name FROM failures WHERE n >= %s AND user_name <> %s ORDER BY user_name",
        (2, "nobody"),
    ).fetchall()
    check(rows, [("alice",), ("bob",)], "two parameters")


def transactions(conn):
    with conn.transaction():
        check(conn.execute("SELECT count(*) FROM failures").fetchone(), (3,), "in transaction")
        with conn.transaction():  # a SAVEPOINT
            check(conn.execute("SELECT max(n) FROM failures").fetchone(), (4,), "in savepoint")
    try:
        with conn.transaction():
            conn.execute("SELECT * FROM no_such_view")
    except psycopg.errors.UndefinedTable:
        pass
    else:
        raise AssertionError("a missing view raises UndefinedTable (42P01)")
    check(conn.execute("SELECT 1").fetchone(), (1,), "after a rolled-back transaction")


def settings(conn):
    check(conn.info.server_version, 150000, "server_version")
    conn.execute("SET application_name = 'psycopg-test'")
    check(conn.execute("SHOW application_name").fetchone(), ("psycopg-test",), "SHOW")
    check(
        conn.execute("SELECT current_setting('application_name')").fetchone(),
        ("psycopg-test",),
        "current_setting sees the connection's SET",
    )


def discard_all(conn):
    """DISCARD ALL drops the connection's prepared statements (a pooler's reset)."""
    pg = conn.pgconn
    res = pg.prepare(b"weir_discard", b"SELECT n FROM failures WHERE user_name = $1")
    check(res.status, psycopg.pq.ExecStatus.COMMAND_OK, "prepare")
    res = pg.exec_prepared(b"weir_discard", [b"bob"])
    check((res.status, res.get_value(0, 0)), (psycopg.pq.ExecStatus.TUPLES_OK, b"2"), "execute")
    conn.execute("DISCARD ALL")
    res = pg.exec_prepared(b"weir_discard", [b"bob"])
    check(res.status, psycopg.pq.ExecStatus.FATAL_ERROR, "execute after DISCARD ALL")
    check(res.error_field(psycopg.pq.DiagnosticField.SQLSTATE), b"26000", "SQLSTATE")
    check(conn.execute("SHOW application_name").fetchone(), ("",), "settings reset")


def main():
    with psycopg.connect(DSN, autocommit=True) as conn:
        text_and_binary(conn)
        prepared(conn)
        settings(conn)
        discard_all(conn)
    with psycopg.connect(DSN) as conn:  # not autocommit: every statement in a transaction
        transactions(conn)
        check(conn.execute("SELECT n FROM failures WHERE user_name = 'bob'").fetchone(), (2,), "implicit transaction")
        conn.commit()
    print("psycopg3: ok")


if __name__ == "__main__":
    main()
