// Sends what Grafana's PostgreSQL data source sends, with Go's pgx (v4) over the simple
// query protocol: the health check's "-- ping", the query builder's discovery queries, and
// every panel query of a dashboard with Grafana's macros expanded for a time range.
//
// Usage: grafana_pgx <connection string> <dashboard.json> <from RFC3339> <to RFC3339> <dir of tables.sql, columns.sql>
// Prints one line per query ("<what>: <rows> rows, first: <values>") and exits 1 on an
// error or on a panel without rows.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v4"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RawSQL string `json:"rawSql"`
		} `json:"targets"`
	} `json:"panels"`
}

var (
	timeGroupAlias = regexp.MustCompile(`\$__timeGroupAlias\(([^,]+),\s*'(\d+)([smh])'\)`)
	timeFilter     = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)
	timeColumn     = regexp.MustCompile(`\$__time\(([^)]+)\)`)
)

// expand replaces the macros the way Grafana's postgres macro engine writes them.
func expand(sql string, from, to time.Time) string {
	sql = timeGroupAlias.ReplaceAllStringFunc(sql, func(m string) string {
		p := timeGroupAlias.FindStringSubmatch(m)
		seconds := map[string]int{"s": 1, "m": 60, "h": 3600}[p[3]]
		var n int
		fmt.Sscan(p[2], &n)
		return fmt.Sprintf(`floor(extract(epoch from %s)/%d)*%d AS "time"`, p[1], n*seconds, n*seconds)
	})
	sql = timeFilter.ReplaceAllString(sql, fmt.Sprintf("$1 BETWEEN '%s' AND '%s'",
		from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano)))
	return timeColumn.ReplaceAllString(sql, `$1 AS "time"`)
}

func run(ctx context.Context, conn *pgx.Conn, what, sql string) (int, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n, first := 0, ""
	for rows.Next() {
		values, err := rows.Values()
		if err != nil {
			return n, err
		}
		if n == 0 {
			first = fmt.Sprint(values)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	fmt.Printf("%s: %d rows, first: %s\n", what, n, first)
	return n, nil
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: grafana_pgx <conn> <dashboard.json> <from> <to> <discovery dir>")
		os.Exit(2)
	}
	fail := func(format string, args ...interface{}) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(1)
	}
	from, err1 := time.Parse(time.RFC3339, os.Args[3])
	to, err2 := time.Parse(time.RFC3339, os.Args[4])
	if err1 != nil || err2 != nil {
		fail("bad time range: %v %v", err1, err2)
	}
	ctx := context.Background()
	config, err := pgx.ParseConfig(os.Args[1])
	if err != nil {
		fail("bad connection string: %v", err)
	}
	config.PreferSimpleProtocol = true
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close(ctx)
	// The data source's health check: pgx's Ping sends "-- ping".
	if err := conn.Ping(ctx); err != nil {
		fail("ping: %v", err)
	}
	fmt.Println("ping: ok")
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 100").Scan(&version); err != nil || version < 1000 {
		fail("version check: %v (%d)", err, version)
	}
	fmt.Printf("version: %d\n", version)
	discovery := os.Args[5]
	tables, err := os.ReadFile(filepath.Join(discovery, "tables.sql"))
	if err != nil {
		fail("%v", err)
	}
	if n, err := run(ctx, conn, "tables", string(tables)); err != nil || n == 0 {
		fail("tables: %v (%d rows)", err, n)
	}
	columns, err := os.ReadFile(filepath.Join(discovery, "columns.sql"))
	if err != nil {
		fail("%v", err)
	}
	if n, err := run(ctx, conn, "columns of alerts", strings.ReplaceAll(string(columns), "$TABLE", "alerts")); err != nil || n == 0 {
		fail("columns: %v (%d rows)", err, n)
	}
	text, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	var d dashboard
	if err := json.Unmarshal(text, &d); err != nil {
		fail("dashboard: %v", err)
	}
	for _, panel := range d.Panels {
		for _, target := range panel.Targets {
			sql := expand(target.RawSQL, from, to)
			n, err := run(ctx, conn, "panel "+panel.Title, sql)
			if err != nil || n == 0 {
				fail("panel %q: %v (%d rows)\n%s", panel.Title, err, n, sql)
			}
		}
	}
}
