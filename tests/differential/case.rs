//! One random case: events in arrival order (with NULLs, boundaries, gaps, disorder within the
//! watermark delay, an optional late tail and a few bad lines) and one to three random views.

use super::oracle::canonical_select;
use super::random::Rng;

/// Event times start here (2026-05-01T00:00:00Z).
pub const BASE_MS: i64 = 1_777_593_600_000;
/// The source's watermark delay.
pub const DELAY_MS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub k: Option<&'static str>,
    pub g: Option<&'static str>,
    pub v: Option<i64>,
    pub x: Option<f64>,
    pub b: Option<bool>,
    /// Event time; `None` makes the line a dead letter.
    pub ts: Option<i64>,
    /// Write `ts` as epoch milliseconds instead of RFC 3339.
    pub ts_as_number: bool,
}

/// A line of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Event(Event),
    /// Not an event: a dead letter.
    Bad(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    None,
    Tumble { size_s: i64 },
    Hop { slide_s: i64, size_s: i64 },
}

/// How a result column is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    Exact,
    /// Floating point whose value depends on the order of operations.
    Float,
    /// Approximate aggregates: only NULL or not.
    NullOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub sql: String,
    pub compare: Compare,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    pub window: Window,
    pub with_end: bool,
    pub keys: Vec<&'static str>,
    pub aggregates: Vec<Aggregate>,
    pub filter: Option<String>,
    pub having: Option<String>,
    /// Client reads of the finished view, each checked against the same filter over the
    /// batch result.
    pub reads: Vec<Read>,
}

/// A client's read of a view: a filter over its columns and maybe a LIMIT. Filters on group
/// keys and window bounds are what the view's scan turns into point reads and range scans,
/// and a filter of every group key equal to a literal is the shape the point-query fast path
/// answers without DataFusion.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub filter: String,
    /// The view's columns the filter names (a simpler view without one drops the read).
    pub columns: Vec<&'static str>,
    pub limit: Option<u64>,
    /// Each group key and its literal, when the read is every key equal to a literal and
    /// nothing else (the point-query shape); else empty.
    pub equalities: Vec<(&'static str, String)>,
    /// `SELECT count(*)` instead of the rows: the scan then projects no column at all.
    pub count: bool,
    /// With a LIMIT: the columns that order the rows first (the window's start and the group
    /// keys, which tell rows apart), so exactly those rows are expected.
    pub order_by: Vec<&'static str>,
}

impl Read {
    /// Whether the read has the point-query shape.
    pub fn is_point(&self) -> bool {
        !self.equalities.is_empty()
    }

    /// This read of `table`, whose columns are `names`: each column cast to text (or the
    /// count), with the read's filter and limit.
    pub fn text_sql(&self, names: &[String], table: &str) -> String {
        if self.count {
            self.sql(&format!("SELECT CAST(count(*) AS VARCHAR) FROM {table}"))
        } else {
            self.sql(&canonical_select(names, table))
        }
    }

    /// `select` (a SELECT ... FROM without WHERE) with this read's filter, order and limit.
    pub fn sql(&self, select: &str) -> String {
        let order = if self.order_by.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", self.order_by.join(", "))
        };
        let limit = self.limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        format!("{select} WHERE {}{order}{limit}", self.filter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Restart {
    /// kill -9 this many milliseconds after the views were created.
    Kill9 { after_ms: u64 },
    /// SIGTERM, then start again.
    Clean { after_ms: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub lines: Vec<Line>,
    /// Lines per file; files are read in order, so arrival order is the order of `lines`.
    pub files: Vec<usize>,
    pub views: Vec<ViewSpec>,
    pub restart: Option<Restart>,
}

impl Event {
    pub fn json(&self) -> String {
        let mut parts = Vec::new();
        let text = |v: Option<&str>| v.map_or("null".to_string(), |s| format!("\"{s}\""));
        parts.push(format!("\"k\":{}", text(self.k)));
        parts.push(format!("\"g\":{}", text(self.g)));
        parts.push(format!(
            "\"v\":{}",
            self.v.map_or("null".into(), |v| v.to_string())
        ));
        parts.push(format!(
            "\"x\":{}",
            self.x.map_or("null".into(), |x| format!("{x:?}"))
        ));
        parts.push(format!(
            "\"b\":{}",
            self.b.map_or("null".into(), |b| b.to_string())
        ));
        let ts = match self.ts {
            None => "null".to_string(),
            Some(t) if self.ts_as_number => t.to_string(),
            Some(t) => format!(
                "\"{}\"",
                chrono::DateTime::from_timestamp_millis(t)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            ),
        };
        parts.push(format!("\"ts\":{ts}"));
        format!("{{{}}}", parts.join(","))
    }
}

impl Line {
    pub fn text(&self) -> String {
        match self {
            Line::Event(e) => e.json(),
            Line::Bad(s) => s.clone(),
        }
    }
}

impl ViewSpec {
    /// The view's SELECT reading `from` (a source, a windowing function over it, or the
    /// oracle's pre-windowed table).
    pub fn select(&self, from: &str) -> String {
        let mut cols = Vec::new();
        let mut group = Vec::new();
        if self.window != Window::None {
            cols.push("window_start".to_string());
            if self.with_end {
                cols.push("window_end".to_string());
            }
            group.push("window_start".to_string());
            group.push("window_end".to_string());
        }
        for k in &self.keys {
            cols.push(k.to_string());
            group.push(k.to_string());
        }
        for (i, a) in self.aggregates.iter().enumerate() {
            cols.push(format!("{} AS a{i}", a.sql));
        }
        let mut sql = format!("SELECT {} FROM {from}", cols.join(", "));
        if let Some(f) = &self.filter {
            sql += &format!(" WHERE {f}");
        }
        if !group.is_empty() {
            sql += &format!(" GROUP BY {}", group.join(", "));
        }
        if let Some(h) = &self.having {
            sql += &format!(" HAVING {h}");
        }
        sql
    }

    /// The FROM clause Weir reads: the source, or a window over it.
    pub fn weir_from(&self, source: &str) -> String {
        match self.window {
            Window::None => source.to_string(),
            Window::Tumble { size_s } => {
                format!("TUMBLE({source}, ts, INTERVAL '{size_s} seconds')")
            }
            Window::Hop { slide_s, size_s } => format!(
                "HOP({source}, ts, INTERVAL '{slide_s} seconds', INTERVAL '{size_s} seconds')"
            ),
        }
    }

    /// How each output column is compared, in select-list order.
    pub fn column_compare(&self) -> Vec<Compare> {
        let fixed = match self.window {
            Window::None => 0,
            _ => 1 + usize::from(self.with_end),
        } + self.keys.len();
        let mut out = vec![Compare::Exact; fixed];
        out.extend(self.aggregates.iter().map(|a| a.compare));
        out
    }
}

const KS: [Option<&str>; 5] = [Some("a"), Some("b"), Some("c"), Some("a b"), None];
const GS: [Option<&str>; 3] = [Some("x"), Some("y"), None];

fn maybe<T>(rng: &mut Rng, null_p: f64, v: T) -> Option<T> {
    (!rng.chance(null_p)).then_some(v)
}

fn random_event(rng: &mut Rng, ts: i64) -> Event {
    Event {
        k: *rng.pick(&KS),
        g: *rng.pick(&GS),
        v: maybe(rng, 0.1, 0).map(|_| rng.range(-50, 50)),
        x: maybe(rng, 0.15, 0).map(|_| rng.range(-40, 40) as f64 * 0.5),
        b: maybe(rng, 0.1, 0).map(|_| rng.chance(0.5)),
        ts: maybe(rng, 0.03, ts),
        ts_as_number: rng.chance(0.3),
    }
}

/// Events in arrival order: a timeline with ties, window boundaries and empty stretches,
/// shuffled by less than the watermark delay, then an optional late tail.
fn random_lines(rng: &mut Rng) -> Vec<Line> {
    let n = match rng.range(0, 19) {
        0 => 0,
        1..=5 => rng.range(1, 20),
        _ => rng.range(20, 300),
    } as usize;
    let mut t = BASE_MS + rng.range(0, 59_999);
    let mut timed: Vec<(i64, Event)> = Vec::with_capacity(n);
    for _ in 0..n {
        t += match rng.range(0, 29) {
            0 => rng.range(60_000, 200_000),      // an empty stretch
            1..=4 => 0,                           // a tie
            5..=9 => 5_000 - t.rem_euclid(5_000), // exactly on a window boundary
            _ => rng.range(1, 3_000),
        };
        let jitter = if rng.chance(0.5) {
            rng.range(0, DELAY_MS - 1)
        } else {
            0
        };
        timed.push((t + jitter, random_event(rng, t)));
    }
    timed.sort_by_key(|(arrival, _)| *arrival);
    let mut lines: Vec<Line> = timed.into_iter().map(|(_, e)| Line::Event(e)).collect();
    if n > 0 && rng.chance(0.3) {
        for _ in 0..rng.range(1, 5) {
            let late = t - DELAY_MS - rng.range(0, 120_000);
            lines.push(Line::Event(random_event(rng, late)));
        }
    }
    if rng.chance(0.1) {
        let bad = [
            "not json".to_string(),
            "{\"k\": \"a\", \"v\": ".to_string(),
            format!("{{\"k\":\"a\",\"v\":\"seven\",\"ts\":{t}}}"),
        ];
        let at = rng.range(0, lines.len() as i64) as usize;
        lines.insert(at, Line::Bad(rng.pick(&bad).clone()));
    }
    lines
}

fn int_expr(rng: &mut Rng) -> String {
    rng.pick(&[
        "v",
        "v",
        "v * 2 + 1",
        "coalesce(v, -1)",
        "CASE WHEN b THEN v ELSE 0 END",
        "abs(v)",
        "CAST(x AS BIGINT)",
    ])
    .to_string()
}

fn float_expr(rng: &mut Rng) -> String {
    rng.pick(&[
        "x",
        "x",
        "coalesce(x, 0)",
        "nvl(x, 1.5)",
        "ifnull(x, -2.5)",
        "x * 2 - v",
        "CAST(v AS DOUBLE)",
        "CASE WHEN x > 0 THEN x END",
        "CASE WHEN v > 0 THEN x ELSE -x END",
        "nvl2(x, CAST(v AS DOUBLE), 0.5)",
    ])
    .to_string()
}

fn text_expr(rng: &mut Rng) -> String {
    rng.pick(&["k", "g", "coalesce(k, 'none')", "upper(g)", "k || '-' || g"])
        .to_string()
}

fn bool_expr(rng: &mut Rng) -> String {
    rng.pick(&["b", "v > 0", "x IS NULL", "coalesce(b, false)", "k = 'a'"])
        .to_string()
}

fn predicate(rng: &mut Rng) -> String {
    let c = rng.range(-30, 30);
    let one = |rng: &mut Rng| -> String {
        match rng.range(0, 8) {
            0 => format!("v > {c}"),
            1 => "x IS NOT NULL".into(),
            2 => "k = 'a'".into(),
            3 => "b".into(),
            4 => "NOT b".into(),
            5 => format!("v BETWEEN {} AND {}", c - 10, c + 10),
            6 => format!("x < {}", c as f64 / 2.0),
            7 => "coalesce(k, 'a') <> 'b'".into(),
            _ => "v > 1000".into(), // keeps nothing
        }
    };
    match rng.range(0, 3) {
        0 => format!("{} AND {}", one(rng), one(rng)),
        1 => format!("({} OR {})", one(rng), one(rng)),
        _ => one(rng),
    }
}

/// `expr` (a DOUBLE) with -0.0 made 0.0. Weir's DISTINCT takes -0.0 and 0.0 as one value, as
/// SQL does (sql/aggregates.slt checks it); DataFusion's batch plans take them as one value or
/// two depending on the plan's shape (one when DISTINCT is rewritten as a GROUP BY), so the
/// cases keep -0.0 out of the arguments that may be DISTINCT. (`+ 0.0` would do it, but
/// DataFusion's simplifier drops it.)
fn zero_unsigned(expr: &str) -> String {
    format!("CASE WHEN {expr} = 0 THEN 0.0 ELSE {expr} END")
}

fn random_aggregate(rng: &mut Rng) -> Aggregate {
    let any = |rng: &mut Rng| match rng.range(0, 3) {
        0 => int_expr(rng),
        1 => zero_unsigned(&float_expr(rng)),
        2 => text_expr(rng),
        _ => bool_expr(rng),
    };
    let distinct = |rng: &mut Rng| if rng.chance(0.3) { "DISTINCT " } else { "" };
    let (mut sql, compare) = match rng.range(0, 18) {
        0 => ("count(*)".to_string(), Compare::Exact),
        1 => (
            format!("count({}{})", distinct(rng), any(rng)),
            Compare::Exact,
        ),
        2 => (
            format!("sum({}{})", distinct(rng), int_expr(rng)),
            Compare::Exact,
        ),
        3 => (format!("sum({})", float_expr(rng)), Compare::Exact),
        4 => (
            format!("avg({}{})", distinct(rng), zero_unsigned(&float_expr(rng))),
            Compare::Float,
        ),
        5 => (format!("min({})", any(rng)), Compare::Exact),
        6 => (format!("max({})", any(rng)), Compare::Exact),
        7 => (format!("stddev({})", float_expr(rng)), Compare::Float),
        8 => (
            format!("approx_distinct({})", text_expr(rng)),
            Compare::Exact,
        ),
        9 => (
            format!(
                "approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY {})",
                float_expr(rng)
            ),
            Compare::NullOnly,
        ),
        10 => (format!("bool_or({})", bool_expr(rng)), Compare::Exact),
        11 => (format!("bool_and({})", bool_expr(rng)), Compare::Exact),
        // Not bit_xor(DISTINCT ...): DataFusion's batch plan fails on it when a value is NULL
        // ("declared as non-nullable but contains null values"), so it cannot be checked.
        12 => (format!("bit_xor({})", int_expr(rng)), Compare::Exact),
        13 => ("covar_samp(v, x)".to_string(), Compare::Float),
        14 => (format!("var_pop({})", int_expr(rng)), Compare::Float),
        15 => (format!("count(DISTINCT {})", any(rng)), Compare::Exact),
        // Weir's own aggregates (udfs/), whose states merge across epochs and restarts.
        16 => (format!("mad({})", float_expr(rng)), Compare::Float),
        17 => (format!("zscore_max({})", float_expr(rng)), Compare::Float),
        _ => (
            format!("min({}) FILTER (WHERE b)", int_expr(rng)),
            Compare::Exact,
        ),
    };
    if rng.chance(0.2) && !sql.contains("FILTER") {
        sql += &format!(" FILTER (WHERE {})", predicate(rng));
    }
    Aggregate { sql, compare }
}

fn random_view(rng: &mut Rng) -> ViewSpec {
    let window = match rng.range(0, 2) {
        0 => Window::None,
        1 => Window::Tumble {
            size_s: *rng.pick(&[5, 10, 30, 60]),
        },
        _ => {
            let slide_s = *rng.pick(&[5, 10, 20]);
            Window::Hop {
                slide_s,
                size_s: slide_s * rng.range(1, 4),
            }
        }
    };
    let mut keys = Vec::new();
    for _ in 0..rng.range(0, 2) {
        let k = *rng.pick(&["k", "g", "b", "v"]);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let aggregates = (0..rng.range(1, 4))
        .map(|_| random_aggregate(rng))
        .collect();
    let having = rng.chance(0.25).then(|| {
        let c = rng.range(-5, 3);
        rng.pick(&[
            format!("count(*) > {}", c.max(0)),
            format!("sum(v) > {c}"),
            "max(x) IS NOT NULL".to_string(),
            format!("min(v) < {c}"),
        ])
        .clone()
    });
    ViewSpec {
        window,
        with_end: rng.chance(0.5),
        keys,
        aggregates,
        filter: rng.chance(0.6).then(|| predicate(rng)),
        having,
        reads: Vec::new(),
    }
}

/// A literal of a group key's type: mostly values the events have, sometimes one they do not.
fn key_literal(rng: &mut Rng, key: &str) -> String {
    match key {
        "k" => rng
            .pick(&["'a'", "'b'", "'c'", "'a b'", "'zz'"])
            .to_string(),
        "g" => rng.pick(&["'x'", "'y'", "'q'"]).to_string(),
        "b" => rng.pick(&["true", "false"]).to_string(),
        _ => rng.range(-50, 50).to_string(),
    }
}

/// A time on a 5-second boundary around the events' span (so it is some windows' start).
fn window_bound(rng: &mut Rng) -> String {
    let ms = BASE_MS + rng.range(-12, 120) * 5_000;
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    format!("'{}'", at.format("%Y-%m-%dT%H:%M:%S"))
}

fn random_read(rng: &mut Rng, view: &ViewSpec) -> Read {
    let mut parts = Vec::new();
    let mut columns = Vec::new();
    let mut equalities = Vec::new();
    if !view.keys.is_empty() && rng.chance(0.7) {
        match rng.range(0, 3) {
            0 | 1 => {
                for k in &view.keys {
                    let literal = key_literal(rng, k);
                    parts.push(format!("{k} = {literal}"));
                    equalities.push((*k, literal));
                    columns.push(*k);
                }
            }
            2 => {
                // DataFusion turns a list of two into `k = a OR k = b`; longer ones reach
                // the scan as IN.
                let k = *rng.pick(&view.keys);
                let list: Vec<String> = (0..rng.range(2, 4)).map(|_| key_literal(rng, k)).collect();
                parts.push(format!("{k} IN ({})", list.join(", ")));
                columns.push(k);
            }
            _ => {
                let k = *rng.pick(&view.keys);
                parts.push(format!("{k} IS NULL"));
                columns.push(k);
            }
        }
    }
    if view.window != Window::None && rng.chance(0.6) {
        let col = if view.with_end && rng.chance(0.3) {
            "window_end"
        } else {
            "window_start"
        };
        let bound = window_bound(rng);
        parts.push(match rng.range(0, 3) {
            0 => format!("{col} >= {bound}"),
            1 => format!("{col} < {bound}"),
            2 => format!("{col} = {bound}"),
            _ => format!("{col} >= {bound} AND {col} < {}", window_bound(rng)),
        });
        columns.push(col);
        equalities.clear();
    }
    let count = rng.chance(0.2);
    let limit = (!count && rng.chance(0.25)).then(|| rng.range(0, 3) as u64);
    if count || limit.is_some() {
        equalities.clear();
    }
    let mut order_by = Vec::new();
    if limit.is_some() && rng.chance(0.5) {
        if view.window != Window::None {
            order_by.push("window_start");
        }
        order_by.extend(view.keys.iter().copied());
        if rng.chance(0.5) {
            order_by.reverse();
        }
    }
    Read {
        filter: if parts.is_empty() {
            "true".to_string()
        } else {
            parts.join(" AND ")
        },
        columns,
        equalities,
        limit,
        count,
        order_by,
    }
}

/// The case for `seed`.
pub fn random_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let lines = random_lines(&mut rng);
    let mut files = Vec::new();
    let mut left = lines.len();
    while left > 0 {
        let n = if rng.chance(0.5) {
            left
        } else {
            rng.range(1, left as i64) as usize
        };
        files.push(n);
        left -= n;
    }
    let mut views: Vec<ViewSpec> = (0..rng.range(1, 3))
        .map(|_| random_view(&mut rng))
        .collect();
    let restart = match rng.range(0, 9) {
        0 => Some(Restart::Kill9 {
            after_ms: rng.range(0, 40) as u64,
        }),
        1 => Some(Restart::Clean {
            after_ms: rng.range(0, 40) as u64,
        }),
        _ => None,
    };
    // Reads come from a stream of their own, so adding them left every case's events and
    // views as they were.
    let mut reads = Rng::new(seed ^ 0x5EAD_5EAD_5EAD_5EAD);
    for view in &mut views {
        view.reads = (0..reads.range(1, 3))
            .map(|_| random_read(&mut reads, view))
            .collect();
    }
    Case {
        lines,
        files,
        views,
        restart,
    }
}
