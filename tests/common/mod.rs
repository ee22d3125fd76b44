//! Test harness: a real `weir` process on free loopback ports, and Postgres clients for it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A `weir` server process; killed when dropped.
pub struct Weir {
    child: Option<Child>,
    pub pg_port: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
}

/// The binary this `cargo test` built, or `WEIR_BIN` when set (long fuzz runs use a copy).
pub fn weir_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("WEIR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_weir").to_string())
    })
}

impl Weir {
    /// Starts weir on `data_dir` with free ports, waiting (bounded) until it accepts queries.
    /// Epochs are 50 ms unless `extra` sets `--epoch-ms`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Weir {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Weir::start`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Weir {
        Self::spawn(data_dir, extra, env, Stdio::inherit())
    }

    /// [`Weir::start`] with the server's stderr (logs, panic messages) written to `log`.
    pub fn start_logging_to(data_dir: &Path, extra: &[&str], log: &Path) -> Weir {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(data_dir, extra, &[], Stdio::from(file))
    }

    fn spawn(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Weir {
        let epoch: &[&str] = if extra.contains(&"--epoch-ms") {
            &[]
        } else {
            &["--epoch-ms", "50"]
        };
        // Backlogged epochs grow to 200 ms at most, not the default 5 s, so that progress
        // shows often enough for tests that kill Weir at chosen points of a stream.
        let max_epoch: &[&str] = if extra.contains(&"--max-epoch-ms") {
            &[]
        } else {
            &["--max-epoch-ms", "200"]
        };
        let mut command = Command::new(weir_bin());
        command
            .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(epoch)
            .args(max_epoch)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "weir=warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut command);
        let mut child = command.spawn().expect("start weir");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("weir exited before it was ready: {:?}", child.wait()));
        // "weir ready: postgres on 127.0.0.1:PORT (...), http on http://127.0.0.1:PORT"
        let port_after = |marker: &str| -> u16 {
            let rest = &line[line.find(marker).expect(marker) + marker.len()..];
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            addr.rsplit(':').next().unwrap().parse().expect("port")
        };
        let pg_port = port_after("postgres on ");
        let http_port = port_after("http on http://");
        std::thread::spawn(move || for _ in lines {});
        Weir {
            child: Some(child),
            pg_port,
            http_port,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub async fn client(&self) -> Client {
        let conn_str = format!("host=127.0.0.1 port={} user=weir dbname=weir", self.pg_port);
        let (client, connection) = tokio_postgres::connect(&conn_str, NoTls)
            .await
            .expect("connect to weir");
        tokio::spawn(connection);
        client
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to commit anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "weir exited with {status}");
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            panic!("weir did not stop within 30 s of SIGTERM");
        }
    }
}

/// Makes the child get SIGKILL when the thread that starts it exits (a test's thread, at the
/// latest when its test binary aborts), so a test that dies mid-way leaks no server holding
/// ports, files or the build lock. Start children only from a test's own thread.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// All rows of a simple query, as text (NULL as "NULL").
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Runs `sql`, which must fail; returns its SQLSTATE and message.
pub async fn refused(client: &Client, sql: &str) -> (String, String) {
    let err = client
        .simple_query(sql)
        .await
        .expect_err(&format!("accepted: {sql}"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Polls `sql` until its first cell equals `expected` (bounded).
pub async fn wait_for(client: &Client, sql: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = rows(client, sql).await;
        if last.first().and_then(|r| r.first()).map(String::as_str) == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {sql} = {expected}; last result {last:?}");
}

/// Waits until every view is finished.
pub async fn wait_views_finished(client: &Client) {
    wait_for(
        client,
        "SELECT count(*) FROM weir_catalog.views WHERE status <> 'finished'",
        "0",
    )
    .await;
}

/// Appends `line` and a newline to the file at `path` (made if missing).
pub fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Writes `lines` as a JSON-lines file.
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

pub mod kafka;
pub mod oracle;

/// Writes security events `0..count` of `seed` as JSON lines (out of order by up to 3 s).
pub fn write_security_events(
    path: &Path,
    seed: u64,
    count: u64,
) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    use datafusion::arrow::json::LineDelimitedWriter;
    let mut batches = Vec::new();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = LineDelimitedWriter::new(std::io::BufWriter::new(file));
    let mut from = 0;
    while from < count {
        let to = (from + 50_000).min(count);
        let batch =
            weir::source::generate(weir::source::GeneratorKind::SecurityEvents, seed, from, to);
        writer.write(&batch).unwrap();
        batches.push(batch);
        from = to;
    }
    writer.finish().unwrap();
    batches
}

/// The `CREATE SOURCE events` statement for security events in `options`.
pub fn security_source_sql(options: &str) -> String {
    format!(
        "CREATE SOURCE IF NOT EXISTS events (event_id TEXT, user_name TEXT, ts TIMESTAMP, type TEXT, source_ip TEXT, \
         geo TEXT, threat_score DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '5 seconds') WITH ({options})"
    )
}

/// GET `path` from weir's HTTP port with a plain HTTP/1.0 request; returns the whole response.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
