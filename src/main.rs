//! The `weir` binary: parses arguments and hands over to the library.

use clap::Parser;
use weir::config::{Cli, Command};

/// mimalloc instead of glibc's malloc: epochs allocate and free millions of small keys and
/// values, and glibc spent ~10% of the view thread in its free lists (perf, 1M-key bench).
/// Built with `override`, it is also the `malloc` of librdkafka and RocksDB. Under glibc,
/// librdkafka's broker thread allocated each Kafka message and the reader thread freed it,
/// and a free of another thread's chunk takes that thread's arena lock: it was the reader's
/// most frequent reason to sleep in a Kafka run (`__lll_lock_wait_private`). Read+decode
/// alone, from the first message on, ran at 1.83-1.86M ev/s with glibc and 2.70-3.00M with
/// mimalloc (1M bids, noida-db). RocksDB's epoch writer costs what it did under glibc with
/// the `mallopt` settings this replaced (HOP 0.078-0.080 us/event against 0.078), which kept
/// glibc from mapping every memtable block and write batch afresh.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("weir=info,warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Turns transparent huge pages off for this process. mimalloc asks for huge pages on its
/// segments, and the kernel then zeroes 2 MiB at each first touch: that was 29% of the operator
/// thread with 1M groups. Off, `weir bench --query keys` ran 1.26x faster at 1K keys and 1.75x
/// at 1M keys (same binary, same run; MIMALLOC_ALLOW_THP=0 did the same).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE sets one flag of this process; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: Result<(), String> = runtime.block_on(async move {
        match cli.command {
            None => {
                let config = cli.server.resolve().map_err(|e| e.to_string())?;
                weir::server::run(config, weir::server::shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Some(Command::Demo(args)) => weir::demo::run(args).await.map_err(|e| e.to_string()),
            Some(Command::Bench(args)) => weir::bench::run(args).await.map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
