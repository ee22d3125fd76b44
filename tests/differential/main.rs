//! Randomized differential test: random events and random views, each view's rows compared
//! with the same SELECT run by DataFusion as a batch query over the same events.
//!
//! In CI it runs a fixed seed and a bounded number of cases. For long local runs:
//!
//! ```sh
//! cargo test --release --test differential -- --cases 2000 --seed 7 --keep-going
//! ```
//!
//! Case `i` of seed `S` is generated from `S + i` alone, so `--seed S+i --cases 1` replays it.
//! A failing case is minimized and printed as a runnable reproducer.

#[path = "../common/mod.rs"]
mod common;

mod case;
mod oracle;
mod random;
mod run;
mod shrink;

use std::time::Instant;

use run::{drop_case, run_case, Server};

struct Args {
    cases: u64,
    seed: u64,
    keep_going: bool,
}

/// Flags we know; anything else (libtest's own flags from `cargo test`) is ignored.
fn parse_args() -> Args {
    let mut args = Args {
        cases: 300,
        seed: 20_261_202,
        keep_going: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match a.as_str() {
            "--cases" => args.cases = number("--cases"),
            "--seed" => args.seed = number("--seed"),
            "--keep-going" => args.keep_going = true,
            _ => {}
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let failures = runtime.block_on(run(&args));
    if failures > 0 {
        eprintln!("differential: {failures} failing case(s)");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("inputs");
    let mut server = Server::start(&dir.path().join("data")).await;
    let started = Instant::now();
    let (mut failures, mut refused, mut rows, mut views, mut restarts) = (0, 0, 0, 0, 0);
    let mut invalid = 0;
    let (mut point_reads, mut prepared_reads, mut fast_path_reads) = (0, 0, 0);
    let mut ran = 0;
    for i in 0..args.cases {
        ran += 1;
        let seed = args.seed.wrapping_add(i);
        let case = case::random_case(seed);
        let source = format!("c{i}");
        let outcome = run_case(&mut server, &case, &source, &root).await;
        drop_case(&server, &case, &source).await;
        views += case.views.len();
        restarts += usize::from(case.restart.is_some());
        rows += outcome.rows_compared;
        refused += outcome.refused.len();
        invalid += outcome.both_refused;
        point_reads += outcome.point_reads;
        prepared_reads += outcome.prepared_reads;
        fast_path_reads += outcome.fast_path_reads;
        for r in &outcome.refused {
            eprintln!("case seed {seed}: refused at CREATE: {r}");
        }
        if let Some(failure) = outcome.failure {
            failures += 1;
            eprintln!("case seed {seed} FAILED: {failure}\nminimizing...");
            let mut shrinker = shrink::Shrinker {
                server: &mut server,
                root: &root,
                prefix: format!("m{i}"),
                attempts: 0,
                budget: 400,
            };
            let (small, why) = shrinker.minimize(case, failure).await;
            eprintln!(
                "minimized reproducer of seed {seed} (replay: --seed {seed} --cases 1):\n{}",
                shrink::reproducer(&small, &why)
            );
            if !args.keep_going {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "differential: {} cases from seed {} ({views} views, {restarts} restarts, {rows} rows compared, \
         {refused} views refused, {invalid} refused by both engines, {point_reads} point reads and \
         {prepared_reads} prepared ones, {fast_path_reads} of them by the fast path) in {secs:.1} s: {:.0} cases/min, {failures} failing",
        ran,
        args.seed,
        ran as f64 * 60.0 / secs
    );
    // Reads of the point-query shape are compared with DataFusion's answer: that means
    // something only if the fast path answered some of them.
    if point_reads >= 20 && fast_path_reads == 0 {
        eprintln!("differential: no point read went the fast path; the comparison tested nothing");
        return failures + 1;
    }
    failures
}
