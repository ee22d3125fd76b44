//! Hostile input: bounded randomized tests (fuzz targets that run on the stable toolchain).
//!
//! - `fuzz_decoders`: JSON and CSV chunks of valid, mutated and random lines, in-process.
//! - `fuzz_ddl`: mutated `CREATE` statements against the engine, in-process.
//! - `fuzz_wire`: malformed Postgres protocol over TCP against a real `weir` process.
//!
//! Each runs a fixed number of cases from a fixed seed in CI (a few seconds each). Local long
//! runs: `WEIR_FUZZ_SECS=600` runs each target for that long instead, `WEIR_FUZZ_CASES=n` runs
//! n cases per target, `WEIR_FUZZ_SEED=n` changes the seed. A failure prints the seed of its
//! case, and `WEIR_FUZZ_SEED=<seed> WEIR_FUZZ_CASES=1` replays it. `WEIR_BIN` points
//! `fuzz_wire` at a copy of the server binary (see docs/reliability.md). Every case a run found
//! is kept as a fixed regression case below.
//!
//! The generator is a seeded splitmix64 rather than proptest: proptest is not a dependency,
//! a new dev-dependency would change the feature sets the tests and the binary share (a
//! rebuild of both), and one 64-bit seed per case is all a replay needs. There is no
//! shrinking; the generators keep cases small instead (a chunk of at most 40 lines, a
//! statement with at most three mutations, one connection's bytes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use weir::decode::{line_spans, Format, JsonDecoder};
use weir::engine::{Engine, EngineConfig, Origin};
use weir::metrics::Metrics;
use weir::plan::{parse_statement, WeirStatement};
use weir::source::LineChunk;
use weir::state::LogLimits;

// ---------------------------------------------------------------------------------------------
// A small seeded generator and the run budget.

/// splitmix64: deterministic, fast, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// How many cases a target runs: `ci` cases, or `WEIR_FUZZ_SECS` seconds.
struct Budget {
    name: &'static str,
    seed: u64,
    cases: u64,
    max_cases: u64,
    until: Option<Instant>,
    started: Instant,
}

impl Budget {
    fn new(name: &'static str, ci_cases: u64, default_seed: u64) -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let until = env("WEIR_FUZZ_SECS").map(|s| Instant::now() + Duration::from_secs(s));
        Self {
            name,
            seed: env("WEIR_FUZZ_SEED").unwrap_or(default_seed),
            cases: 0,
            max_cases: env("WEIR_FUZZ_CASES").unwrap_or(if until.is_some() {
                u64::MAX
            } else {
                ci_cases
            }),
            until,
            started: Instant::now(),
        }
    }

    /// The seed of the next case, or None when the budget is spent.
    fn next_case(&mut self) -> Option<u64> {
        if self.cases >= self.max_cases || self.until.is_some_and(|t| Instant::now() >= t) {
            return None;
        }
        self.cases += 1;
        Some(self.seed.wrapping_add(self.cases - 1))
    }

    fn report(&self, extra: &str) {
        eprintln!(
            "{}: {} cases in {:.1} s (seed {}){extra}",
            self.name,
            self.cases,
            self.started.elapsed().as_secs_f64(),
            self.seed
        );
    }
}

/// At most `n` bytes of `b`, escaped, for a failure message.
fn show(b: &[u8], n: usize) -> String {
    let cut = &b[..b.len().min(n)];
    format!(
        "{:?}{}",
        String::from_utf8_lossy(cut),
        if b.len() > n { "…" } else { "" }
    )
}

// ---------------------------------------------------------------------------------------------
// Target 1: the JSON and CSV decoders.

fn decoder_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn text_value(rng: &mut Rng) -> String {
    let parts = [
        "a",
        "bob",
        "x y",
        "é",
        "日本",
        "q\"t",
        "back\\slash",
        "tab\t",
        "",
        "0",
    ];
    (0..rng.below(3) + 1).map(|_| *rng.pick(&parts)).collect()
}

fn timestamp_text(rng: &mut Rng) -> String {
    format!(
        "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        rng.below(40),
        rng.below(12) + 1,
        rng.below(28) + 1,
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// A JSON line the decoder must accept (fields in any order, some missing, some extra).
fn valid_json(rng: &mut Rng) -> String {
    let mut fields = vec![if rng.chance(2) {
        format!("\"ts\":{}", rng.below(2_000_000_000_000))
    } else {
        format!("\"ts\":\"{}\"", timestamp_text(rng))
    }];
    if !rng.chance(4) {
        fields.push(format!(
            "\"k\":{}",
            serde_json::Value::String(text_value(rng))
        ));
    }
    if !rng.chance(4) {
        fields.push(format!(
            "\"v\":{}",
            rng.next() as i64 / (1 << rng.below(63))
        ));
    }
    if !rng.chance(4) {
        fields.push(format!("\"f\":{}", (rng.next() % 100_000) as f64 / 7.0));
    }
    if rng.chance(3) {
        fields.push(format!("\"b\":{}", rng.chance(2)));
    }
    if rng.chance(5) {
        fields.push("\"extra\":{\"nested\":[1,2,{\"x\":null}]}".into());
    }
    if rng.chance(6) {
        fields.push("\"v\":null".into());
        let last = fields.len() - 1;
        fields.swap(0, last);
    }
    let n = fields.len();
    fields.swap(rng.below(n), rng.below(n));
    format!(
        "{{{}}}",
        fields.join(if rng.chance(3) { ", " } else { "," })
    )
}

/// A CSV line (k, v, f, b, ts in declared order) the decoder must accept.
fn valid_csv(rng: &mut Rng, delimiter: u8) -> String {
    let d = delimiter as char;
    let k = match rng.below(3) {
        0 => String::new(),
        1 => "plain".to_string(),
        _ => format!("\"has {d} and \"\" quote\""),
    };
    let v = if rng.chance(5) {
        String::new()
    } else {
        (rng.next() as i64 / (1 << rng.below(63))).to_string()
    };
    let f = format!("{}", (rng.next() % 100_000) as f64 / 3.0);
    let b = *rng.pick(&["true", "false", ""]);
    format!("{k}{d}{v}{d}{f}{d}{b}{d}{}", timestamp_text(rng))
}

/// `line` changed in one of the ways hostile input differs from good input.
fn mutate_line(rng: &mut Rng, line: &str) -> Vec<u8> {
    let mut b = line.as_bytes().to_vec();
    let rounds = rng.below(3) + 1;
    for _ in 0..rounds {
        let at = rng.below(b.len() + 1);
        match rng.below(14) {
            // bit flips
            0 => {
                for _ in 0..rng.below(4) + 1 {
                    if !b.is_empty() {
                        let i = rng.below(b.len());
                        b[i] ^= 1 << rng.below(8);
                    }
                }
            }
            // truncation
            1 => b.truncate(at),
            // huge numbers
            2 => {
                let huge = rng.pick(&[
                    "9223372036854775808",
                    "-9223372036854775809",
                    "1e309",
                    "-1e400",
                    "123456789012345678901234567890123456789012345678901234567890",
                    "0.000000000000000000000000000000000000000000000001e-400",
                    "NaN",
                    "-0",
                    "1E",
                    "--1",
                ]);
                replace_digits(&mut b, at, huge.as_bytes());
            }
            // deep nesting as a value
            3 => {
                let depth = if rng.chance(4) {
                    rng.below(100_000)
                } else {
                    rng.below(200)
                };
                let open = if rng.chance(2) { b'[' } else { b'{' };
                let mut nest = Vec::new();
                for _ in 0..depth {
                    nest.push(open);
                    if open == b'{' {
                        nest.extend_from_slice(b"\"a\":");
                    }
                }
                nest.push(b'1');
                for _ in 0..depth {
                    nest.push(if open == b'[' { b']' } else { b'}' });
                }
                b.splice(at..at, nest);
            }
            // invalid UTF-8
            4 => {
                let bad = *rng.pick(&[
                    &[0xff][..],
                    &[0xc3][..],
                    &[0xe2, 0x82][..],
                    &[0xed, 0xa0, 0x80][..],
                    &[0xf4, 0x90, 0x80, 0x80][..],
                    &[0xc0, 0xaf][..],
                ]);
                b.splice(at..at, bad.iter().copied());
            }
            // huge string
            5 => {
                let n = if rng.chance(8) {
                    1 << 20
                } else {
                    rng.below(70_000)
                };
                let mut s = vec![b'"'];
                s.extend(std::iter::repeat_n(b'x', n));
                s.push(b'"');
                replace_digits(&mut b, at, &s);
            }
            // separators and structure in odd places
            6 => {
                let odd = *rng.pick(&[
                    &b"\r"[..],
                    &b"\n"[..],
                    &b"\""[..],
                    &b"{"[..],
                    &b"}"[..],
                    &b","[..],
                    &b"|"[..],
                    &b"\0"[..],
                    &b"\\"[..],
                    &b"\\u"[..],
                    &b"\\ud800"[..],
                    &b" \x0c "[..],
                    &b"null"[..],
                ]);
                b.splice(at..at, odd.iter().copied());
            }
            // two records on one line
            7 => {
                let again = b.clone();
                b.extend_from_slice(if rng.chance(2) { b" " } else { b"" });
                b.extend(again);
            }
            // random bytes
            8 => {
                let n = rng.below(16) + 1;
                let junk = rng.bytes(n);
                b.splice(at..at, junk);
            }
            // delete a span
            9 => {
                let end = (at + rng.below(8) + 1).min(b.len());
                b.drain(at.min(end)..end);
            }
            // wrong types for the columns
            10 => {
                let wrong = rng.pick(&[
                    "\"x\"",
                    "[]",
                    "{}",
                    "true",
                    "\"2026-13-45T99:99:99Z\"",
                    "\"\"",
                    "1.5",
                    "-1",
                ]);
                replace_digits(&mut b, at, wrong.as_bytes());
            }
            // a record that is not an object
            11 => {
                b = rng
                    .pick(&["[1,2]", "1", "\"s\"", "null", "true", "[]", "{}"])
                    .as_bytes()
                    .to_vec()
            }
            // duplicate a span
            12 => {
                let end = (at + rng.below(12) + 1).min(b.len());
                let piece = b[at.min(end)..end].to_vec();
                b.splice(at..at, piece);
            }
            // extreme timestamps
            _ => {
                let ts = rng.pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "\"+275760-09-13T00:00:00Z\"",
                    "\"-9999-01-01T00:00:00Z\"",
                    "\"2026-01-01T00:00:00+99:99\"",
                    "1e18",
                ]);
                replace_digits(&mut b, at, ts.as_bytes());
            }
        }
    }
    b
}

/// Replaces the run of digits at or after `at` with `with` (inserts it if there is none).
fn replace_digits(b: &mut Vec<u8>, at: usize, with: &[u8]) {
    let start = (at..b.len())
        .find(|&i| b[i].is_ascii_digit())
        .unwrap_or(at.min(b.len()));
    let end = (start..b.len())
        .find(|&i| !b[i].is_ascii_digit())
        .unwrap_or(b.len());
    b.splice(start..end, with.iter().copied());
}

struct DecodeCase {
    format: Format,
    data: Vec<u8>,
    start_offset: u64,
    /// Kafka-style chunk: one record per line, the offset after each.
    record_ends: Option<Vec<u64>>,
    /// Start offsets in `data` of lines generated valid and left alone.
    valid_starts: Vec<usize>,
}

fn decode_case(rng: &mut Rng) -> DecodeCase {
    let format = match rng.below(3) {
        0 | 1 => Format::Json,
        _ => Format::Csv {
            header: rng.chance(3),
            delimiter: *rng.pick(b",|;\t"),
        },
    };
    let records = rng.chance(4);
    let mut data = Vec::new();
    let mut valid_starts = Vec::new();
    let lines = rng.below(40) + 1;
    let mut record_ends = Vec::new();
    for i in 0..lines {
        let good = match format {
            Format::Json => valid_json(rng),
            Format::Csv { delimiter, .. } => valid_csv(rng, delimiter),
        };
        let kind = rng.below(10);
        if !records && rng.chance(12) {
            data.extend_from_slice(b"  \t\n");
        }
        let mut line = match kind {
            0..=4 => {
                if !(i == 0 && matches!(format, Format::Csv { header: true, .. })) {
                    valid_starts.push(data.len());
                }
                good.into_bytes()
            }
            5..=8 => mutate_line(rng, &good),
            _ => {
                let n = rng.below(200);
                rng.bytes(n)
            }
        };
        if records {
            // As the Kafka reader makes them: line breaks become spaces, blank records have
            // no line.
            for c in &mut line {
                if *c == b'\n' || *c == b'\r' {
                    *c = b' ';
                }
            }
            if line.iter().all(|c| c.is_ascii_whitespace()) {
                valid_starts.retain(|s| *s != data.len());
                continue;
            }
            record_ends.push(1000 + i as u64 * 3);
        }
        data.extend_from_slice(&line);
        if records || i + 1 < lines || rng.chance(2) {
            data.push(b'\n');
        }
    }
    DecodeCase {
        format,
        data,
        start_offset: if rng.chance(2) {
            0
        } else {
            rng.below(1 << 40) as u64
        },
        record_ends: records.then_some(record_ends),
        valid_starts,
    }
}

fn chunk_of(case: &DecodeCase) -> LineChunk {
    LineChunk {
        file_name: "fuzz".into(),
        split: 0,
        start_offset: case.start_offset,
        data: case.data.clone(),
        record_ends: case.record_ends.clone(),
        extra: None,
        skipped: 0,
        rejected: Vec::new(),
        end: case.start_offset + case.data.len() as u64,
    }
}

/// Decodes `case` whole and line by line, and checks they agree: each line is a row or one
/// dead letter with a reason, in place, whatever its neighbours; valid lines decode.
fn check_decode(case: &DecodeCase) -> Result<(), String> {
    let schema = decoder_schema();
    let decoder = || JsonDecoder::new(schema.clone(), Some(4)).with_format(case.format);
    let whole = decoder().decode(chunk_of(case));
    let mut spans = line_spans(&case.data);
    if matches!(case.format, Format::Csv { header: true, .. })
        && case.record_ends.is_none()
        && case.start_offset == 0
        && !spans.is_empty()
    {
        spans.remove(0);
    }
    if let Some(ends) = &case.record_ends {
        if ends.len() != spans.len() {
            return Err(format!(
                "case error: {} records, {} lines",
                ends.len(),
                spans.len()
            ));
        }
    }
    let all = line_spans(&case.data);
    let mut rows = Vec::new();
    let mut row_ends = Vec::new();
    let mut dead = Vec::new();
    for &(start, end) in &spans {
        // The line alone, at the same place (a record chunk keeps its offset).
        let mut data = case.data[start..end].to_vec();
        data.push(b'\n');
        let record_ends = case
            .record_ends
            .as_ref()
            .map(|ends| vec![ends[all.iter().position(|s| s.0 == start).unwrap()]]);
        let alone = DecodeCase {
            format: case.format,
            data,
            start_offset: case.start_offset + start as u64,
            record_ends,
            valid_starts: Vec::new(),
        };
        // (Only a CSV header can be at offset 0 of a file, and it is not in `spans`.)
        let one = decoder().decode(chunk_of(&alone));
        if one.batch.num_rows() + one.dead.len() != 1 {
            return Err(format!(
                "line at {start} alone gave {} rows and {} dead letters: {}",
                one.batch.num_rows(),
                one.dead.len(),
                show(&case.data[start..end], 300)
            ));
        }
        if one.batch.num_rows() == 1 {
            rows.push(one.batch);
            row_ends.extend(one.row_ends);
        } else {
            if case.valid_starts.contains(&start) {
                return Err(format!(
                    "a valid line became a dead letter ({}): {}",
                    one.dead[0].error,
                    show(&case.data[start..end], 300)
                ));
            }
            dead.extend(one.dead);
        }
    }
    if whole.batch.num_rows() != whole.row_ends.len() {
        return Err(format!(
            "{} rows but {} row ends",
            whole.batch.num_rows(),
            whole.row_ends.len()
        ));
    }
    if whole.row_ends != row_ends {
        return Err(format!(
            "rows at {:?}, line by line at {row_ends:?}",
            whole.row_ends
        ));
    }
    let expected = concat_batches(&schema, &rows).map_err(|e| e.to_string())?;
    if whole.batch != expected {
        return Err("the chunk's rows differ from its lines' rows".into());
    }
    // The same dead letters; their order is not (lines that do not decode come first, then
    // rows refused for their event time).
    let places = |d: &[weir::decode::DeadLetter]| -> Vec<String> {
        let mut p: Vec<String> = d.iter().map(|x| x.position.clone()).collect();
        p.sort();
        p
    };
    if places(&whole.dead) != places(&dead) {
        return Err(format!(
            "dead letters at {:?}, line by line at {:?}",
            places(&whole.dead),
            places(&dead)
        ));
    }
    if let Some(d) = whole.dead.iter().find(|d| d.error.trim().is_empty()) {
        return Err(format!("a dead letter without a reason at {}", d.position));
    }
    // Some columns read by no view: the same rows and dead letters, and each row shown whole
    // (from its line) is the row read with every column.
    let read = [
        case.start_offset.is_multiple_of(2),
        case.data.len().is_multiple_of(2),
        case.start_offset.is_multiple_of(3),
        case.data.len().is_multiple_of(3),
        false,
    ];
    let part = decoder().reading_only(&read).decode(chunk_of(case));
    if part.row_ends != whole.row_ends || places(&part.dead) != places(&whole.dead) {
        return Err(format!(
            "reading {read:?}: rows at {:?}, dead letters at {:?}",
            part.row_ends,
            places(&part.dead)
        ));
    }
    for i in 0..part.batch.num_rows() {
        let row = part.batch.slice(i, 1);
        let shown = match &part.lines {
            Some(lines) => lines.whole_row(row, i),
            None => row,
        };
        if shown != whole.batch.slice(i, 1) {
            return Err(format!("reading {read:?}: row {i} shown whole differs"));
        }
    }
    Ok(())
}

fn run_decode_case(case: &DecodeCase) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| check_decode(case))) {
        Ok(r) => r,
        Err(panic) => Err(format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

#[test]
fn fuzz_decoders() {
    let mut budget = Budget::new("fuzz_decoders", 1000, 0x5eed_0001);
    let mut lines = 0;
    while let Some(seed) = budget.next_case() {
        let case = decode_case(&mut Rng(seed));
        lines += line_spans(&case.data).len();
        if let Err(e) = run_decode_case(&case) {
            panic!(
                "case seed {seed} ({:?}, offset {}, records {:?}): {e}\nchunk: {}",
                case.format,
                case.start_offset,
                case.record_ends.is_some(),
                show(&case.data, 2000)
            );
        }
    }
    budget.report(&format!(", {lines} lines"));
}

/// Cases the fuzzer found, kept fixed.
#[test]
fn decoder_regressions() {
    let json = |text: &str| DecodeCase {
        format: Format::Json,
        data: text.as_bytes().to_vec(),
        start_offset: 7,
        record_ends: None,
        valid_starts: Vec::new(),
    };
    let csv = |text: &str| DecodeCase {
        format: Format::Csv {
            header: false,
            delimiter: b',',
        },
        ..json(text)
    };
    let cases = [
        // Two objects on one line were one row, and the second shifted the rows after it.
        json("{\"ts\":1}{\"ts\":2}\n{\"ts\":3,\"k\":\"a\"}\n"),
        // An object running over two lines was taken as one row of a line each.
        json("{\"ts\":1}{\"ts\":2}\n{\"ts\":3,\"k\":\n\"a\"}\n"),
        // A quoted CSV field running into the next line, and a carriage return in a line.
        csv("a,1,1.0,true,2026-01-01T00:00:00Z\rb,2,2.0,false,2026-01-01T00:00:01Z\n\"c,3,3.0,true,2026-01-01T00:00:02Z\nd\",4,4.0,true,2026-01-01T00:00:03Z\n"),
        csv("\"a\n,1,1.0,true,2026-01-01T00:00:00Z\n"),
        // A record, then a quote left open on the same line: the open quote was dropped.
        csv("a,1,1.0,true,2026-01-01T00:00:00Z\r\"x\nb,2,2.0,false,2026-01-01T00:00:01Z\n"),
        // Lines ending in CRLF are records.
        csv("a,1,1.0,true,2026-01-01T00:00:00Z\r\nb,2,2.0,false,2026-01-01T00:00:01Z\r\n"),
    ];
    for case in &cases {
        if let Err(e) = run_decode_case(case) {
            panic!("{}: {e}", show(&case.data, 300));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Target 2: the DDL parser and planner, through the engine's CREATE path.

fn data_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .display()
        .to_string()
}

/// The CREATE statements of `sql/*.slt` and `examples/*.sql`.
fn ddl_corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("sql"))
        .unwrap()
        .chain(std::fs::read_dir(root.join("examples")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${DATA}", &data_dir());
        let statements: Vec<String> = match ext {
            // Records are separated by blank lines; a statement record starts with `statement`.
            "slt" => text
                .split("\n\n")
                .filter_map(|record| {
                    let record = record.trim_start_matches('\n');
                    let (head, body) = record.split_once('\n')?;
                    head.starts_with("statement").then(|| body.to_string())
                })
                .collect(),
            "sql" => text
                .split(';')
                .map(|s| {
                    s.lines()
                        .filter(|l| !l.trim_start().starts_with("--"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .collect(),
            _ => continue,
        };
        out.extend(
            statements
                .into_iter()
                .map(|s| s.trim().trim_end_matches(';').to_string())
                .filter(|s| s.to_ascii_uppercase().starts_with("CREATE")),
        );
    }
    out
}

const EXTREME_INTERVALS: &[&str] = &[
    "0 seconds",
    "-1 day",
    "1 millisecond",
    "1 microsecond",
    "1 nanosecond",
    "0.5 milliseconds",
    "2147483647 days",
    "-2147483648 days",
    "9223372036854775807 milliseconds",
    "106751991167 days",
    "1 month",
    "1 year",
    "1e400 seconds",
    "1 day -86400001 milliseconds",
    "",
    "x",
    "1",
    "NaN seconds",
    "1 fortnight",
];

const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "1e308",
    "1e-400",
    "99999999999999999999999999999999999999",
    "0.0000001",
];

const EXTREME_STRINGS: &[&str] = &[
    "",
    "0",
    "-1",
    "9223372036854775807",
    "1e400",
    "true",
    "kafka",
    "generator",
    "file",
    "csv",
    "json",
    "/",
    "/dev/null",
    "/nonexistent/dir",
    "latest",
    "earliest",
    "\u{0}",
    "é",
    "'",
];

/// `sql` with a few tokens dropped, duplicated, swapped or replaced by extremes.
fn mutate_sql(rng: &mut Rng, sql: &str, words: &[String]) -> String {
    let Ok(mut tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    for _ in 0..rng.below(3) + 1 {
        let solid: Vec<usize> = (0..tokens.len())
            .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
            .collect();
        if solid.is_empty() {
            break;
        }
        let i = *rng.pick(&solid);
        let space = Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
        match rng.below(8) {
            0 => {
                tokens.remove(i);
            }
            1 => {
                let t = tokens[i].clone();
                tokens.insert(i, space);
                tokens.insert(i, t);
            }
            2 => {
                let j = *rng.pick(&solid);
                tokens.swap(i, j);
            }
            3 => {
                let word = rng.pick(words).clone();
                tokens.insert(i, space);
                tokens.insert(i, Token::make_word(&word, None));
            }
            // literals to extremes, wherever they are
            _ => {
                let literals: Vec<usize> = solid
                    .iter()
                    .copied()
                    .filter(|&j| {
                        matches!(tokens[j], Token::Number(..) | Token::SingleQuotedString(_))
                    })
                    .collect();
                if literals.is_empty() {
                    continue;
                }
                let j = *rng.pick(&literals);
                tokens[j] = match (&tokens[j], rng.below(3)) {
                    (Token::Number(..), 0) => {
                        Token::SingleQuotedString(rng.pick(EXTREME_STRINGS).to_string())
                    }
                    (Token::Number(..), _) => {
                        Token::Number(rng.pick(EXTREME_NUMBERS).to_string(), false)
                    }
                    (_, 0) => Token::SingleQuotedString(rng.pick(EXTREME_STRINGS).to_string()),
                    _ => Token::SingleQuotedString(rng.pick(EXTREME_INTERVALS).to_string()),
                };
            }
        }
    }
    tokens.iter().map(|t| t.to_string()).collect()
}

/// A HOP or TUMBLE view over the file source with random extreme sizes.
fn window_sql(rng: &mut Rng) -> String {
    fn interval(rng: &mut Rng) -> String {
        if rng.chance(2) {
            rng.pick(EXTREME_INTERVALS).to_string()
        } else {
            let unit = *rng.pick(&["millisecond", "second", "minute", "hour", "day", "week"]);
            format!(
                "{} {unit}",
                rng.pick(&[0, 1, 2, 7, 60, 999, 1000, 1001, 100000])
            )
        }
    }
    let (a, b) = (interval(rng), interval(rng));
    let from = if rng.chance(2) {
        format!("HOP(logins, ts, INTERVAL '{a}', INTERVAL '{b}')")
    } else {
        format!("TUMBLE(logins, ts, INTERVAL '{a}')")
    };
    let retention = if rng.chance(4) {
        format!(" WITH (retention = '{}')", interval(rng))
    } else {
        String::new()
    };
    format!(
        "CREATE MATERIALIZED VIEW fz_win{retention} AS SELECT window_start, window_end, \
         count(*) AS c FROM {from} GROUP BY window_start, window_end"
    )
}

async fn open_engine(dir: &Path) -> Arc<Engine> {
    Engine::open(
        EngineConfig {
            data_dir: dir.to_path_buf(),
            epoch: Duration::from_millis(20),
            max_epoch: Duration::from_millis(weir::config::DEFAULT_MAX_EPOCH_MS),
            state_cache_bytes: 16 << 20,
            decode_threads: 2,
            ingest_nice: 0,
            logs: LogLimits::default(),
            llm: None,
        },
        Arc::new(Metrics::new()),
    )
    .await
    .expect("open the engine")
}

async fn query(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .context()
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

async fn catalog_names(engine: &Engine) -> String {
    query(
        engine,
        "SELECT 'source' AS kind, name FROM weir_catalog.sources UNION ALL \
         SELECT 'view', name FROM weir_catalog.views ORDER BY 1, 2",
    )
    .await
}

/// Open findings of `fuzz_ddl`, not fixed yet: a failure whose reason contains one of these
/// is counted and reported, not failed on (see docs/reliability.md and the ignored tests
/// below, which fail until they are fixed).
const KNOWN_DDL_FAILURES: &[&str] = &[
    // approx_top_k's k is checked when the first group's accumulator is made, not at CREATE.
    "approx_top_k's k must be from 1 to",
];

/// Sources and views `failed`, as a table (empty when none); known findings are counted in
/// `known` and left out.
async fn failed(engine: &Engine, known: &mut u64) -> String {
    let sql = "SELECT 'source' AS kind, name, status, error FROM weir_catalog.sources WHERE status = 'failed' \
               UNION ALL SELECT 'view', name, status, error FROM weir_catalog.views WHERE status = 'failed'";
    let text = query(engine, sql).await;
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .collect();
    let unknown: Vec<&str> = rows
        .iter()
        .copied()
        .filter(|row| !KNOWN_DDL_FAILURES.iter().any(|k| row.contains(k)))
        .collect();
    *known += (rows.len() - unknown.len()) as u64;
    unknown.join("\n")
}

/// What the engine did with one statement.
#[derive(Debug)]
enum Verdict {
    Accepted(WeirStatement),
    /// Refused by the parser, the planner or the engine, with the reason.
    Refused(String),
    /// Not a CREATE (a mutation can make a DROP or a SHOW), or a Kafka source that could
    /// reach beyond 127.0.0.1: not run.
    Skipped,
}

/// True for a Kafka source whose only brokers are the closed port of the corpus, so the
/// fuzzer never makes the client resolve or dial anything else.
fn kafka_is_local(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    !lower.contains("kafka")
        || (lower.matches("brokers").count() == 1 && lower.contains("brokers = '127.0.0.1:1'"))
}

/// Parses and runs one statement through the engine in its own task, so a panic of the
/// parser, the planner or the engine is caught; a hang is bounded.
async fn execute(engine: &Arc<Engine>, sql: &str) -> Result<Verdict, String> {
    if !kafka_is_local(sql) {
        return Ok(Verdict::Skipped);
    }
    let (engine, text) = (engine.clone(), sql.to_string());
    let task = tokio::spawn(async move {
        let stmt = match parse_statement(&text) {
            Ok(Some(stmt @ (WeirStatement::CreateSource(_) | WeirStatement::CreateView(_)))) => {
                stmt
            }
            Ok(_) => return Verdict::Skipped,
            Err(e) => return Verdict::Refused(e.to_string()),
        };
        match engine.execute(stmt.clone(), &text, Origin::Client).await {
            Ok(_) => Verdict::Accepted(stmt),
            Err(e) => Verdict::Refused(e.to_string()),
        }
    });
    match tokio::time::timeout(Duration::from_secs(60), task).await {
        Err(_) => Err("hang: no answer within 60 s".into()),
        Ok(Err(join)) => Err(format!("panic: {join}")),
        Ok(Ok(verdict)) => Ok(verdict),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_ddl() {
    let mut budget = Budget::new("fuzz_ddl", 200, 0x5eed_0002);
    let corpus = ddl_corpus();
    assert!(corpus.len() > 20, "found {} statements", corpus.len());
    let words: Vec<String> = {
        let mut w: Vec<String> = corpus
            .iter()
            .flat_map(|s| {
                Tokenizer::new(&PostgreSqlDialect {}, s)
                    .tokenize()
                    .unwrap_or_default()
            })
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.value),
                _ => None,
            })
            .collect();
        w.sort();
        w.dedup();
        w
    };
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open_engine(&dir.path().join("data")).await;
    let base = [
        format!(
            "CREATE SOURCE logins (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, \
             geo TEXT, threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
             WITH (connector = 'file', path = '{}/logins.jsonl', format = 'json')",
            data_dir()
        ),
        format!(
            "CREATE SOURCE csv_readings (user_name TEXT, ts TIMESTAMP, n BIGINT, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}/logins_pipe.csv', format = 'csv', csv.header = 'true', \
             csv.delimiter = '|')",
            data_dir()
        ),
    ];
    for sql in &base {
        let verdict = execute(&engine, sql).await;
        assert!(
            matches!(verdict, Ok(Verdict::Accepted(_))),
            "{sql}: {verdict:?}"
        );
    }
    let base_names = catalog_names(&engine).await;
    // Definitions a case created, dropped (after a restart check) every few successes.
    let mut created: Vec<(String, WeirStatement)> = Vec::new();
    let mut accepted = 0;
    let mut refused = 0;
    let mut skipped = 0;
    let mut restarts = 0;
    let mut known = 0;
    while let Some(seed) = budget.next_case() {
        let mut rng = Rng(seed);
        let sql = if rng.chance(4) {
            let sql = window_sql(&mut rng);
            if rng.chance(2) {
                mutate_sql(&mut rng, &sql, &words)
            } else {
                sql
            }
        } else {
            let sql = rng.pick(&corpus).clone();
            mutate_sql(&mut rng, &sql, &words)
        };
        let before = catalog_names(&engine).await;
        match execute(&engine, &sql).await {
            Err(e) => panic!("case seed {seed}: {e}\n{sql}"),
            Ok(Verdict::Skipped) => skipped += 1,
            Ok(Verdict::Refused(reason)) => {
                refused += 1;
                assert!(
                    !reason.trim().is_empty(),
                    "case seed {seed}: refused without a reason\n{sql}"
                );
                let after = catalog_names(&engine).await;
                assert_eq!(
                    before, after,
                    "case seed {seed}: a refused statement changed the catalog ({reason})\n{sql}"
                );
            }
            Ok(Verdict::Accepted(stmt)) => {
                accepted += 1;
                created.push((sql.clone(), stmt));
            }
        }
        if created.len() >= 6 || (budget.until.is_none() && budget.cases == budget.max_cases) {
            // What was accepted must start again: restart, nothing failed, then drop it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sqls: Vec<&str> = created.iter().map(|(sql, _)| sql.as_str()).collect();
            let broken = failed(&engine, &mut known).await;
            assert!(
                broken.is_empty(),
                "failed after CREATE:\n{broken}\n{sqls:#?}"
            );
            // The engine is dropped, which releases its store, and opened again on the same
            // directory, as a process restart would.
            engine.shutdown().await;
            drop(engine);
            engine = open_engine(&dir.path().join("data")).await;
            restarts += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let broken = failed(&engine, &mut known).await;
            assert!(
                broken.is_empty(),
                "failed after a restart:\n{broken}\n{sqls:#?}"
            );
            drop_created(&engine, &mut created).await;
            assert_eq!(catalog_names(&engine).await, base_names);
        }
    }
    engine.shutdown().await;
    budget.report(&format!(
        ", {accepted} accepted, {refused} refused, {skipped} skipped, {restarts} restarts, \
         {known} known findings (failed after CREATE)"
    ));
}

/// Drops what the cases created: views first, then sources.
async fn drop_created(engine: &Arc<Engine>, created: &mut Vec<(String, WeirStatement)>) {
    let names = query(
        engine,
        "SELECT 'v' AS k, name FROM weir_catalog.views UNION ALL SELECT 's', name FROM weir_catalog.sources ORDER BY 1 DESC",
    )
    .await;
    for line in names.lines().skip(3) {
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let [kind, name] = cells[..] else { continue };
        if (kind == "s") && (name == "logins" || name == "csv_readings") {
            continue;
        }
        let what = if kind == "v" {
            "MATERIALIZED VIEW"
        } else {
            "SOURCE"
        };
        let sql = format!("DROP {what} \"{}\"", name.replace('"', "\"\""));
        let stmt = parse_statement(&sql).unwrap().unwrap();
        engine
            .execute(stmt, &sql, Origin::Client)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    created.clear();
}

/// Statements that must be refused with a reason and leave nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let source = format!(
        "CREATE SOURCE logins (user_name TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') \
         WITH (connector = 'file', path = '{}/logins.jsonl', format = 'json')",
        data_dir()
    );
    let verdict = execute(&engine, &source).await;
    assert!(matches!(verdict, Ok(Verdict::Accepted(_))), "{verdict:?}");
    let view = |from: &str| {
        format!(
            "CREATE MATERIALIZED VIEW r AS SELECT window_start, count(*) AS c FROM {from} \
             GROUP BY window_start, window_end"
        )
    };
    let cases = [
        // Issue 12: 86,400,000 windows per row.
        view("HOP(logins, ts, INTERVAL '1 millisecond', INTERVAL '1 day')"),
        view("TUMBLE(logins, ts, INTERVAL '0 seconds')"),
        view("TUMBLE(logins, ts, INTERVAL '-1 day')"),
        view("TUMBLE(logins, ts, INTERVAL '1 month')"),
        view("HOP(logins, ts, INTERVAL '1 day', INTERVAL '-1 day')"),
        "CREATE SOURCE s2 (a TEXT) WITH (connector = 'file', path = '/nonexistent/dir')".into(),
    ];
    for sql in &cases {
        let before = catalog_names(&engine).await;
        let verdict = execute(&engine, sql).await;
        assert!(
            matches!(&verdict, Ok(Verdict::Refused(r)) if !r.trim().is_empty()),
            "{sql}: {verdict:?}"
        );
        assert_eq!(catalog_names(&engine).await, before, "{sql}");
    }
    engine.shutdown().await;
}

/// Found by `fuzz_ddl`: `approx_top_k(x, k)` with k out of range was accepted at CREATE and
/// the view failed when its first row arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approx_top_k_with_k_out_of_range_is_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let source = format!(
        "CREATE SOURCE logins (user_name TEXT, source_ip TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts) \
         WITH (connector = 'file', path = '{}/logins.jsonl', format = 'json')",
        data_dir()
    );
    assert!(matches!(
        execute(&engine, &source).await,
        Ok(Verdict::Accepted(_))
    ));
    let sql = "CREATE MATERIALIZED VIEW top AS SELECT user_name, \
               approx_top_k(source_ip, -9223372036854775808) AS top_ips FROM logins GROUP BY user_name";
    let verdict = execute(&engine, sql).await;
    engine.shutdown().await;
    assert!(matches!(verdict, Ok(Verdict::Refused(_))), "{verdict:?}");
}

// ---------------------------------------------------------------------------------------------
// Target 3: the Postgres wire front end over TCP.

fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn odd_length(rng: &mut Rng, honest: usize) -> i32 {
    let random = rng.next() as i32;
    *rng.pick(&[
        0,
        1,
        3,
        4,
        5,
        -1,
        i32::MIN,
        i32::MAX,
        0x0100_0000,
        10_001,
        honest as i32 - 1,
        honest as i32 + 1,
        honest as i32 + 1000,
        random,
    ])
}

const MESSAGE_TYPES: &[u8] = b"QPBEDSCHFXdcfp";

/// A message of a random type with a random (or honest) length and body.
fn random_message(rng: &mut Rng) -> Vec<u8> {
    let kind = if rng.chance(4) {
        rng.next() as u8
    } else {
        *rng.pick(MESSAGE_TYPES)
    };
    let body: Vec<u8> = match (kind, rng.below(3)) {
        (b'Q', 0) => b"SELECT 1\0".to_vec(),
        (b'Q', 1) => {
            let mut b = rng
                .pick(&[
                    &b"SELECT \xff\xfe"[..],
                    b"SELECT '",
                    b"CREATE SOURCE",
                    b"\0\0",
                    b"SELECT 1; SELECT",
                ])
                .to_vec();
            b.push(0);
            b
        }
        (b'P', 0) => b"s1\0SELECT $1\0\x00\x01\x00\x00\x00\x17".to_vec(),
        (b'B', 0) => {
            let mut b = b"\0s1\0".to_vec();
            b.extend_from_slice(&(rng.next() as i16).to_be_bytes());
            let n = rng.below(16);
            b.extend(rng.bytes(n));
            b
        }
        (b'E', 0) => b"\0\xff\xff\xff\xff".to_vec(),
        _ => {
            let n = if rng.chance(10) {
                rng.below(100_000)
            } else {
                rng.below(64)
            };
            rng.bytes(n)
        }
    };
    let mut out = message(kind, &body);
    if rng.chance(3) {
        let len = odd_length(rng, body.len() + 4);
        out[1..5].copy_from_slice(&len.to_be_bytes());
    }
    if rng.chance(5) {
        let cut = rng.below(out.len());
        out.truncate(cut);
    }
    out
}

const HOSTILE_SQL: &[&str] = &[
    "SELECT 1",
    "SELECT 'é' || 'ü'",
    "SET search_path = 'é'",
    "SET extra_float_digits = 99999999999",
    "SET TIME ZONE 'Mars/Olympus'",
    "SHOW ALL",
    "SHOW é",
    "RESET ALL",
    "DISCARD ALL",
    "BEGIN; SAVEPOINT a; ROLLBACK TO SAVEPOINT b; COMMIT",
    "COPY (SELECT 1) TO STDOUT",
    "COPY weir_catalog.sources TO STDOUT WITH (FORMAT csv)",
    "COPY t FROM STDIN",
    "SELECT current_setting('é')",
    "SELECT pg_catalog.current_setting('server_version', true)",
    "SELECT version()",
    "SELECT * FROM pg_catalog.pg_class WHERE relname = 'é'",
    "SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = $1",
    "SHOW SOURCES",
    "SHOW MATERIALIZED VIEWS",
    "DROP SOURCE IF EXISTS é",
    "CREATE SOURCE é (a TEXT) WITH (connector = 'file', path = '/nonexistent')",
    "CREATE MATERIALIZED VIEW v AS SELECT count(*) FROM HOP(x, ts, INTERVAL '1 millisecond', INTERVAL '1 day')",
    "DECLARE c CURSOR FOR SELECT 1; FETCH 99999999999 FROM c; CLOSE c",
    "SELECT 1; -- é",
    "/* é */ SELECT 1",
    "SELECT $1",
    "SELECT 1::numeric(1000, 999)",
    "SELECT repeat('x', 100000000)",
    "SELECT 9223372036854775807 + 1",
];

/// A hostile statement: one of `HOSTILE_SQL`, perhaps cut or with bytes changed.
fn hostile_sql(rng: &mut Rng) -> Vec<u8> {
    let mut sql = rng.pick(HOSTILE_SQL).as_bytes().to_vec();
    for _ in 0..rng.below(3) {
        let at = rng.below(sql.len() + 1);
        match rng.below(6) {
            0 => sql.truncate(at),
            1 => sql.insert(at, *rng.pick(b"'\";()$%\xc3\xff-/*")),
            2 => sql.splice(at..at, "é日".bytes()).for_each(drop),
            3 => {
                let i = rng.below(sql.len().max(1));
                if i < sql.len() {
                    sql[i] ^= 1 << rng.below(8);
                }
            }
            4 => {
                let other = rng.pick(HOSTILE_SQL).as_bytes();
                sql.splice(at..at, other.iter().copied()).for_each(drop);
            }
            _ => {}
        }
    }
    sql.retain(|b| *b != 0);
    sql
}

fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = s.iter().copied().filter(|b| *b != 0).collect();
    v.push(0);
    v
}

/// An extended-protocol exchange with odd parameter counts, formats, types and names.
fn extended_exchange(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let name = *rng.pick(&[&b""[..], b"s", b"\xc3"]);
    let sql = hostile_sql(rng);
    let mut parse = cstr(name);
    parse.extend(cstr(&sql));
    let types = rng.below(4);
    parse.extend_from_slice(&(types as i16).to_be_bytes());
    for _ in 0..types {
        let oid = *rng.pick(&[
            0u32,
            16,
            20,
            23,
            25,
            700,
            701,
            1043,
            1114,
            1700,
            3802,
            u32::MAX,
            99999,
        ]);
        parse.extend_from_slice(&oid.to_be_bytes());
    }
    out.extend(message(b'P', &parse));
    let mut bind = cstr(if rng.chance(2) { b"p" } else { b"" });
    bind.extend(cstr(if rng.chance(5) { b"missing" } else { name }));
    let formats = rng.below(4);
    bind.extend_from_slice(&(formats as i16).to_be_bytes());
    for _ in 0..formats {
        bind.extend_from_slice(&(*rng.pick(&[0i16, 1, 2, -1])).to_be_bytes());
    }
    let params = rng.below(4);
    bind.extend_from_slice(&(params as i16).to_be_bytes());
    for _ in 0..params {
        let value: Vec<u8> = match rng.below(5) {
            0 => b"1".to_vec(),
            1 => 7i32.to_be_bytes().to_vec(),
            2 => "é".as_bytes().to_vec(),
            3 => b"\xff\xfe".to_vec(),
            _ => {
                let n = rng.below(12);
                rng.bytes(n)
            }
        };
        let len = match rng.below(6) {
            0 => -1,
            1 => -2,
            2 => value.len() as i32 + 3,
            _ => value.len() as i32,
        };
        bind.extend_from_slice(&len.to_be_bytes());
        if len > 0 {
            bind.extend(value);
        }
    }
    let results = rng.below(3);
    bind.extend_from_slice(&(results as i16).to_be_bytes());
    for _ in 0..results {
        bind.extend_from_slice(&(*rng.pick(&[0i16, 1, 7])).to_be_bytes());
    }
    out.extend(message(b'B', &bind));
    let mut describe = vec![*rng.pick(b"SPX")];
    describe.extend(cstr(if rng.chance(2) { b"p" } else { name }));
    out.extend(message(b'D', &describe));
    let mut execute = cstr(if rng.chance(2) { b"p" } else { b"" });
    execute.extend_from_slice(&(*rng.pick(&[0i32, 1, -1, i32::MAX])).to_be_bytes());
    out.extend(message(b'E', &execute));
    if rng.chance(3) {
        let mut close = vec![*rng.pick(b"SP")];
        close.extend(cstr(name));
        out.extend(message(b'C', &close));
    }
    out.extend(message(b'S', &[]));
    out
}

/// The bytes one hostile connection sends.
fn wire_case(rng: &mut Rng) -> Vec<u8> {
    let good = startup_packet(&[("user", "weir"), ("database", "weir")]);
    match rng.below(11) {
        // Arbitrary bytes from the first byte on.
        0 => {
            let n = rng.below(300);
            rng.bytes(n)
        }
        // A startup packet with a wrong length.
        1 => {
            let mut p = good.clone();
            let len = odd_length(rng, p.len());
            p[..4].copy_from_slice(&len.to_be_bytes());
            p
        }
        // A startup packet cut short.
        2 => good[..rng.below(good.len())].to_vec(),
        // A startup packet with odd parameters or protocol version.
        3 => {
            let long = "x".repeat(rng.below(100_000));
            let params: Vec<(&str, &str)> = match rng.below(5) {
                0 => vec![("user", "")],
                1 => vec![("user", long.as_str())],
                2 => vec![("", ""), ("user", "weir")],
                3 => vec![("options", "-c search_path=\u{1}"), ("user", "weir")],
                _ => vec![],
            };
            let mut p = startup_packet(&params);
            if rng.chance(2) {
                let version = *rng.pick(&[
                    0u32,
                    196_609,
                    131_072,
                    80_877_103,
                    80_877_104,
                    80_877_102,
                    u32::MAX,
                ]);
                p[4..8].copy_from_slice(&version.to_be_bytes());
            }
            if rng.chance(3) {
                p.pop();
            }
            p
        }
        // SSL / GSS / cancel requests with odd lengths or trailing junk.
        4 => {
            let code = *rng.pick(&[80_877_103u32, 80_877_104, 80_877_102]);
            let mut p = 8i32.to_be_bytes().to_vec();
            p.extend_from_slice(&code.to_be_bytes());
            if code == 80_877_102 {
                p[..4].copy_from_slice(&16i32.to_be_bytes());
                p.extend(rng.bytes(8));
            }
            if rng.chance(2) {
                let len = odd_length(rng, p.len());
                p[..4].copy_from_slice(&len.to_be_bytes());
            }
            let n = rng.below(100);
            p.extend(rng.bytes(n));
            p
        }
        // Garbage after a good startup.
        5 => {
            let mut p = good.clone();
            let n = rng.below(500);
            p.extend(rng.bytes(n));
            p
        }
        // Hostile statements on the simple protocol.
        6 => {
            let mut p = good.clone();
            for _ in 0..rng.below(3) + 1 {
                p.extend(message(b'Q', &cstr(&hostile_sql(rng))));
            }
            p.extend(message(b'X', &[]));
            p
        }
        // Odd extended-protocol exchanges.
        7 | 8 => {
            let mut p = good.clone();
            for _ in 0..rng.below(2) + 1 {
                p.extend(extended_exchange(rng));
            }
            p
        }
        // Random messages after a good startup.
        _ => {
            let mut p = good.clone();
            for _ in 0..rng.below(6) + 1 {
                p.extend(random_message(rng));
            }
            p
        }
    }
}

/// Sends `bytes` on a fresh connection, reads what comes back for a moment, and closes.
fn hostile_connection(port: u16, bytes: &[u8], half_close: bool) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.set_read_timeout(Some(Duration::from_millis(40)))?;
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(100);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// A normal client connects and gets `SELECT 1` answered, within `limit`.
async fn select_one(port: u16, limit: Duration) -> Result<(), String> {
    let attempt = async {
        let conn = format!("host=127.0.0.1 port={port} user=weir dbname=weir connect_timeout=5");
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let task = tokio::spawn(connection);
        let rows = client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| format!("SELECT 1: {e}"))?;
        drop(client);
        let _ = task.await;
        let one = rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1")),
        );
        if one {
            Ok(())
        } else {
            Err(format!(
                "SELECT 1 answered {} messages without 1",
                rows.len()
            ))
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn fuzz_wire() {
    let mut budget = Budget::new("fuzz_wire", 150, 0x5eed_0003);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("weir.log");
    let weir = crate::common::Weir::start_logging_to(&dir.path().join("data"), &[], &log);
    let port = weir.pg_port;
    let pid = weir.pid().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(select_one(port, Duration::from_secs(10)))
        .expect("weir answers at start");
    let mut recent: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut max_rss = 0;
    let mut checks = 0;
    let mut known_panics = 0;
    while let Some(seed) = budget.next_case() {
        let mut rng = Rng(seed);
        let bytes = wire_case(&mut rng);
        let half_close = rng.chance(2);
        hostile_connection(port, &bytes, half_close).unwrap_or_else(|e| {
            panic!(
                "case seed {seed}: connect failed: {e}\n{}",
                show(&bytes, 500)
            )
        });
        recent.push((seed, bytes));
        if recent.len() > 20 {
            recent.remove(0);
        }
        if budget.cases.is_multiple_of(20) || budget.cases == budget.max_cases {
            checks += 1;
            max_rss = max_rss.max(rss_kb(pid));
            let (panicked, known) = panics(&log);
            known_panics = known;
            let answer = rt.block_on(select_one(port, Duration::from_secs(10)));
            if let Err(e) = answer.and(if panicked.is_empty() {
                Ok(())
            } else {
                Err(format!("weir panicked: {panicked:?}"))
            }) {
                let cases: Vec<String> = recent
                    .iter()
                    .map(|(s, b)| format!("seed {s}: {}", show(b, 300)))
                    .collect();
                panic!(
                    "after case seed {seed}: {e}\nrecent cases:\n{}",
                    cases.join("\n")
                );
            }
        }
    }
    rt.block_on(select_one(port, Duration::from_secs(10)))
        .expect("weir answers at the end");
    max_rss = max_rss.max(rss_kb(pid));
    budget.report(&format!(
        ", {checks} SELECT 1 checks, max RSS {} MiB, {known_panics} known contained panics",
        max_rss / 1024
    ));
}

/// Open findings of `fuzz_wire`, not fixed yet: a panic whose message contains one of these
/// is counted, not failed on, as long as the server goes on answering (see
/// docs/reliability.md and the ignored test below).
const KNOWN_WIRE_PANICS: &[&str] = &[
    // pgwire 0.41.1 decodes a password message ('p') whose length field is below 4 with
    // `split_to(len - 4)`: the connection's task panics; the server goes on.
    "bytes_mut.rs:413",
    // Found by the first CI run of `fuzz_wire` (case seed 1592590438): pgwire reads a message
    // body with `Buf` getters that panic when the body is shorter than its fields
    // (`advance out of bounds`); the same containment.
    "bytes-1.12.2/src/lib.rs:207",
];

/// The panic lines of the server's log not in `KNOWN_WIRE_PANICS`, and how many were.
fn panics(log: &Path) -> (Vec<String>, u64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).collect();
    let unknown: Vec<String> = all
        .iter()
        .filter(|l| !KNOWN_WIRE_PANICS.iter().any(|k| l.contains(k)))
        .map(|l| l.to_string())
        .collect();
    let known = (all.len() - unknown.len()) as u64;
    (unknown, known)
}

/// Found by `fuzz_wire` (case seed 1592590366): a password message with a length field of 3.
fn short_password_message() -> Vec<u8> {
    let mut bytes = startup_packet(&[("user", "weir"), ("database", "weir")]);
    bytes.extend_from_slice(b"p\0\0\0\x03&\xaa\xbb");
    bytes
}

/// The server survives the case: the connection ends, other clients are answered.
#[test]
fn a_password_message_shorter_than_its_header_leaves_the_server_answering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("weir.log");
    let weir = crate::common::Weir::start_logging_to(&dir.path().join("data"), &[], &log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for half_close in [false, true] {
        hostile_connection(weir.pg_port, &short_password_message(), half_close).unwrap();
    }
    rt.block_on(select_one(weir.pg_port, Duration::from_secs(10)))
        .expect("weir answers after the short password message");
    let (unknown, _) = panics(&log);
    assert!(unknown.is_empty(), "{unknown:?}");
}

/// Open finding: the connection's task panics inside pgwire. Fails until pgwire (or a length
/// check in front of it) refuses the message with an error.
#[ignore = "open finding of fuzz_wire: pgwire 0.41.1 panics on a password message shorter than 4 bytes"]
#[test]
fn a_password_message_shorter_than_its_header_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("weir.log");
    let weir = crate::common::Weir::start_logging_to(&dir.path().join("data"), &[], &log);
    hostile_connection(weir.pg_port, &short_password_message(), true).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}

/// Reads backend messages until ReadyForQuery; returns their type bytes.
fn read_until_ready(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut kinds = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).expect("a message header");
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).expect("a message body");
        kinds.push(head[0]);
        if head[0] == b'Z' {
            return kinds;
        }
    }
}

/// A server logging to a file, and a raw connection to it past its startup.
fn raw_session(dir: &Path) -> (crate::common::Weir, TcpStream, std::path::PathBuf) {
    let log = dir.join("weir.log");
    let weir = crate::common::Weir::start_logging_to(&dir.join("data"), &[], &log);
    let mut s = TcpStream::connect(("127.0.0.1", weir.pg_port)).unwrap();
    s.write_all(&startup_packet(&[("user", "weir"), ("database", "weir")]))
        .unwrap();
    read_until_ready(&mut s);
    (weir, s, log)
}

/// Found by `fuzz_wire` (case seed 523): an Execute whose row limit is negative made pgwire
/// reserve `usize::MAX` rows and panic. Postgres reads a limit of zero or below as "all
/// rows"; so does Weir, and for a limit past a million (which pgwire would reserve whole).
/// A small limit still suspends the portal after its count.
#[test]
fn an_execute_with_a_negative_or_huge_row_limit_returns_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (_weir, mut s, log) = raw_session(dir.path());
    let sql = "SELECT * FROM (VALUES (1), (2), (3)) AS t(x)";
    for (limit, rows, end) in [(-1i32, 3, b'C'), (i32::MAX, 3, b'C'), (2, 2, b's')] {
        let kinds = bind_exchange(&mut s, sql, &[], (&[], &[], &[]), Then::Execute(limit));
        let data_rows = kinds.iter().filter(|k| **k == b'D').count();
        assert_eq!(data_rows, rows, "limit {limit}: {kinds:?}");
        assert!(
            kinds.contains(&end),
            "limit {limit} ends with {end}: {kinds:?}"
        );
        assert!(
            !kinds.contains(&b'E'),
            "limit {limit} is no error: {kinds:?}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}

/// What follows a Bind in [`bind_exchange`].
enum Then {
    /// Execute with this row limit.
    Execute(i32),
    /// Describe the portal.
    Describe,
}

/// One extended-protocol exchange: Parse (`param_types`), Bind with the given format codes
/// and text parameters, then what `then` says, and Sync; returns the answer's message types.
fn bind_exchange(
    s: &mut TcpStream,
    sql: &str,
    param_types: &[i32],
    (param_formats, params, result_formats): (&[i16], &[&str], &[i16]),
    then: Then,
) -> Vec<u8> {
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.push(0);
    parse.extend_from_slice(&(param_types.len() as i16).to_be_bytes());
    for t in param_types {
        parse.extend_from_slice(&t.to_be_bytes());
    }
    let mut bind = vec![0u8, 0u8];
    bind.extend_from_slice(&(param_formats.len() as i16).to_be_bytes());
    for f in param_formats {
        bind.extend_from_slice(&f.to_be_bytes());
    }
    bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        bind.extend_from_slice(&(p.len() as i32).to_be_bytes());
        bind.extend_from_slice(p.as_bytes());
    }
    bind.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        bind.extend_from_slice(&f.to_be_bytes());
    }
    let mut exchange = message(b'P', &parse);
    exchange.extend(message(b'B', &bind));
    exchange.extend(match then {
        Then::Describe => message(b'D', b"P\0"),
        Then::Execute(limit) => {
            let mut execute = vec![0u8];
            execute.extend_from_slice(&limit.to_be_bytes());
            message(b'E', &execute)
        }
    });
    exchange.extend(message(b'S', b""));
    s.write_all(&exchange).unwrap();
    read_until_ready(s)
}

/// Found by `fuzz_wire` (case seed 1486): a Bind with fewer result (or parameter) format
/// codes than its query has columns (or parameters) made pgwire index past the list at
/// Describe or Execute and panic. Weir refuses such a portal with 08P01, as Postgres does,
/// and the session goes on.
#[test]
fn format_codes_that_do_not_fit_the_query_are_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_weir, mut s, log) = raw_session(dir.path());
    let three = "SELECT 1 AS a, 2 AS b, 3 AS c";
    for then in [Then::Execute(0), Then::Describe] {
        let kinds = bind_exchange(&mut s, three, &[], (&[], &[], &[0, 0]), then);
        assert!(
            kinds.contains(&b'E'),
            "two result formats, three columns: {kinds:?}"
        );
        assert!(!kinds.contains(&b'D'), "{kinds:?}");
    }
    let kinds = bind_exchange(
        &mut s,
        "SELECT $1 AS x",
        &[23],
        (&[0, 0], &["5"], &[]),
        Then::Execute(0),
    );
    assert!(
        kinds.contains(&b'E'),
        "two parameter formats, one parameter: {kinds:?}"
    );
    // Codes that fit (one per column) still work, on the same session.
    let kinds = bind_exchange(&mut s, three, &[], (&[], &[], &[0, 0, 0]), Then::Execute(0));
    assert_eq!(kinds.iter().filter(|k| **k == b'D').count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&b'E'), "{kinds:?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}
