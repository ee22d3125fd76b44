"""SQLAlchemy 2 against Weir, with psycopg2 and with psycopg 3 (what Superset and pandas
use): the dialect's `select version()` parsing at connect, the inspector's listing of
tables, views, materialized views, columns, primary keys, indexes and unique constraints,
a table reflected by autoload, and Core selects with bound parameters.

Run by tests/integration/clients.rs with WEIR_PG_PORT set, after it created the views `failures` and
`worst` from tests/data/logins.jsonl. Exits non-zero on the first wrong value.
"""

import os

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

PORT = os.environ["WEIR_PG_PORT"]


def check(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def inspect(engine, driver):
    insp = sa.inspect(engine)
    check(engine.dialect.server_version_info[:2], (15, 0), f"{driver}: version parsed")
    check(insp.get_table_names(), [], f"{driver}: no plain tables")
    check(insp.get_view_names(), [], f"{driver}: no plain views on the search path")
    check(
        sorted(insp.get_materialized_view_names()),
        ["failures", "worst"],
        f"{driver}: materialized views",
    )
    check(
        sorted(insp.get_materialized_view_names(schema="public")),
        ["failures", "worst"],
        f"{driver}: materialized views of public",
    )
    check(
        sorted(insp.get_view_names(schema="weir_catalog")),
        ["dead_letters", "late_rows", "llm_analyses", "source_partitions", "sources", "views"],
        f"{driver}: weir_catalog's system views",
    )
    check(
        insp.get_schema_names(),
        ["information_schema", "public", "weir_catalog"],
        f"{driver}: schemas",
    )
    check(insp.has_table("failures"), True, f"{driver}: has_table of a materialized view")
    check(insp.has_table("nope"), False, f"{driver}: has_table of nothing")
    check(insp.get_foreign_keys("failures"), [], f"{driver}: no foreign keys")
    columns = [(c["name"], type(c["type"]), c["nullable"], c["default"]) for c in insp.get_columns("worst")]
    check(
        columns,
        [
            ("user_name", sa.TEXT, True, None),
            ("worst", postgresql.DOUBLE_PRECISION, True, None),
            ("geos", sa.NUMERIC, True, None),
            ("first_seen", postgresql.TIMESTAMP, True, None),
        ],
        f"{driver}: columns of worst",
    )
    check(
        [(c["name"], type(c["type"])) for c in insp.get_columns("failures")],
        [("user_name", sa.TEXT), ("n", sa.BIGINT)],
        f"{driver}: columns of failures",
    )
    check(insp.get_pk_constraint("failures")["constrained_columns"], [], f"{driver}: no primary key")
    check(insp.get_indexes("failures"), [], f"{driver}: no indexes")
    check(insp.get_unique_constraints("failures"), [], f"{driver}: no unique constraints")


def core_selects(engine, driver):
    failures = sa.Table("failures", sa.MetaData(), autoload_with=engine)
    check([c.name for c in failures.columns], ["user_name", "n"], f"{driver}: autoload")
    query = (
        sa.select(failures.c.user_name, failures.c.n)
        .where(failures.c.n >= sa.bindparam("least"))
        .order_by(failures.c.user_name)
    )
    with engine.connect() as conn:
        check(
            conn.execute(query, {"least": 2}).all(),
            [("alice", 4), ("bob", 2)],
            f"{driver}: Core select with a bound parameter",
        )
        got = conn.execute(
            sa.text("SELECT n FROM failures WHERE user_name = :name"), {"name": "carol"}
        ).scalar_one()
        check(got, 1, f"{driver}: text() with a bound parameter")
        in_list = sa.select(sa.func.sum(failures.c.n)).where(
            failures.c.user_name.in_(["alice", "bob"])
        )
        check(conn.execute(in_list).scalar_one(), 6, f"{driver}: IN with an expanded list")
        version = conn.execute(sa.text("select version()")).scalar_one()
        assert version.startswith("PostgreSQL 15.0 (Weir "), f"{driver}: {version}"


def main():
    for driver in ["psycopg2", "psycopg"]:
        engine = sa.create_engine(f"postgresql+{driver}://analyst@127.0.0.1:{PORT}/weir")
        inspect(engine, driver)
        core_selects(engine, driver)
        engine.dispose()
    print("sqlalchemy: ok")


if __name__ == "__main__":
    main()
