import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import org.postgresql.PGStatement;

/**
 * pgJDBC (what DBeaver, Metabase and Tableau use) against Weir: DatabaseMetaData discovery,
 * server-prepared statements with parameters and binary results, and fetch size with
 * autocommit off (a portal read a row limit at a time).
 *
 * <p>Run by tests/integration/clients.rs with WEIR_PG_PORT set, after it created the views `failures`
 * and `worst` from tests/data/logins.jsonl. Exits non-zero on the first wrong value.
 */
public class JdbcClient {
    static void check(Object got, Object want, String what) {
        if (!Objects.equals(got, want)) {
            throw new AssertionError(what + ": got " + got + ", want " + want);
        }
    }

    /** Every row of `rs` as its columns' text, joined by spaces; closes `rs`. */
    static List<String> rows(ResultSet rs, String... columns) throws SQLException {
        List<String> out = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                List<String> row = new ArrayList<>();
                for (String column : columns) {
                    row.add(rs.getString(column));
                }
                out.add(String.join(" ", row));
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("WEIR_PG_PORT")
                + "/weir?user=analyst&prepareThreshold=1";
        try (Connection conn = DriverManager.getConnection(url)) {
            metadata(conn);
            prepared(conn);
            fetchSize(conn);
        }
        System.out.println("jdbc ok");
    }

    static void metadata(Connection conn) throws SQLException {
        DatabaseMetaData md = conn.getMetaData();
        check(md.getDatabaseProductName(), "PostgreSQL", "product name");
        check(md.getDatabaseMajorVersion(), 15, "server major version");

        List<String> schemas = rows(md.getSchemas(), "TABLE_SCHEM");
        for (String schema : List.of("public", "weir_catalog", "pg_catalog", "information_schema")) {
            if (!schemas.contains(schema)) {
                throw new AssertionError("getSchemas lacks " + schema + ": " + schemas);
            }
        }
        check(rows(md.getSchemas(null, "weir%"), "TABLE_SCHEM"), List.of("weir_catalog"),
                "getSchemas(pattern)");

        check(rows(md.getTables(null, "public", "%", null), "TABLE_NAME", "TABLE_TYPE"),
                List.of("failures MATERIALIZED VIEW", "worst MATERIALIZED VIEW"), "getTables");
        check(rows(md.getTables(null, null, "fail%", new String[] {"MATERIALIZED VIEW"}),
                "TABLE_SCHEM", "TABLE_NAME"), List.of("public failures"), "getTables(types)");
        check(rows(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME"),
                List.of(), "getTables(TABLE)");

        List<String> columns = rows(md.getColumns(null, "public", "worst", "%"),
                "ORDINAL_POSITION", "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "IS_NULLABLE");
        check(columns, List.of(
                "1 user_name text " + Types.VARCHAR + " YES",
                "2 worst float8 " + Types.DOUBLE + " YES",
                "3 geos numeric " + Types.NUMERIC + " YES",
                "4 first_seen timestamp " + Types.TIMESTAMP + " YES"), "getColumns");
        check(rows(md.getColumns(null, null, "failures", "n"), "COLUMN_NAME", "TYPE_NAME"),
                List.of("n int8"), "getColumns(column pattern)");

        // A materialized view has no primary key; pgJDBC's query (information_schema.
        // _pg_expandarray over pg_index) must still run.
        check(rows(md.getPrimaryKeys(null, "public", "failures"), "COLUMN_NAME"), List.of(),
                "getPrimaryKeys");
        check(rows(md.getPrimaryKeys(null, null, "worst"), "COLUMN_NAME"), List.of(),
                "getPrimaryKeys(any schema)");
    }

    static void prepared(Connection conn) throws SQLException {
        String[] names = {"alice", "bob", "carol", "alice", "nobody"};
        Long[] counts = {4L, 2L, 1L, 4L, null};
        try (PreparedStatement ps = conn.prepareStatement("SELECT n FROM failures WHERE user_name = ?")) {
            for (int i = 0; i < names.length; i++) {
                ps.setString(1, names[i]);
                try (ResultSet rs = ps.executeQuery()) {
                    Long got = rs.next() ? rs.getLong(1) : null;
                    check(got, counts[i], "prepared count of " + names[i]);
                    check(rs.next(), false, "one row for " + names[i]);
                }
            }
            // prepareThreshold=1: the statement is a named server-side statement, with
            // binary results, from its first execution.
            check(ps.unwrap(PGStatement.class).isUseServerPrepare(), true, "server-prepared");
        }
        String sql = "SELECT user_name, worst, geos, first_seen FROM worst "
                + "WHERE worst >= ? AND first_seen >= ? ORDER BY user_name";
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int round = 0; round < 3; round++) {
                ps.setDouble(1, 25.0);
                ps.setTimestamp(2, Timestamp.valueOf("2026-01-01 00:00:10"));
                List<String> got = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        BigDecimal geos = rs.getBigDecimal(3);
                        got.add(rs.getString(1) + " " + rs.getDouble(2) + " " + geos.intValueExact()
                                + " " + rs.getTimestamp(4));
                    }
                }
                check(got, List.of("bob 25.0 1 2026-01-01 00:00:30.0",
                        "carol 50.0 1 2026-01-01 00:01:30.0"), "typed parameters, round " + round);
            }
        }
    }

    /** Counts the PortalSuspended messages pgJDBC logs (a portal stopped at its row limit). */
    static class Suspensions extends Handler {
        final AtomicInteger seen = new AtomicInteger();

        @Override
        public void publish(LogRecord record) {
            String message = record.getMessage();
            if (message != null && message.contains("PortalSuspended")) {
                seen.incrementAndGet();
            }
        }

        @Override
        public void flush() {}

        @Override
        public void close() {}
    }

    static void fetchSize(Connection conn) throws SQLException {
        Logger logger = Logger.getLogger("org.postgresql");
        Suspensions suspensions = new Suspensions();
        logger.setLevel(Level.FINEST);
        logger.addHandler(suspensions);
        conn.setAutoCommit(false);
        String sql = "SELECT user_name, n FROM failures WHERE n >= ? ORDER BY user_name";
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            ps.setFetchSize(1);
            ps.setLong(1, 1);
            check(rows(ps.executeQuery(), "user_name", "n"), List.of("alice 4", "bob 2", "carol 1"),
                    "rows fetched one at a time");
        }
        try (Statement st = conn.createStatement()) {
            st.setFetchSize(2);
            check(rows(st.executeQuery("SELECT name FROM weir_catalog.views ORDER BY name"), "name"),
                    List.of("failures", "worst"), "rows fetched two at a time");
        }
        conn.commit();
        conn.setAutoCommit(true);
        logger.removeHandler(suspensions);
        logger.setLevel(Level.INFO);
        // 3 rows by 1: suspended after rows 1, 2 and 3; 2 rows by 2: after row 2.
        if (suspensions.seen.get() < 3) {
            throw new AssertionError("fetch size did not use row limits: " + suspensions.seen.get()
                    + " PortalSuspended");
        }
    }
}
