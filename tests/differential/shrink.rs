//! Minimizing a failing case: fewer views, no restart, one file, fewer lines, a simpler view;
//! each step is kept only if the case still fails.

use std::path::Path;

use super::case::{Case, ViewSpec};
use super::run::{drop_case, run_case, statements, Server};

/// Tries candidate cases against a server; counts attempts against a budget.
pub struct Shrinker<'a> {
    pub server: &'a mut Server,
    pub root: &'a Path,
    pub prefix: String,
    pub attempts: usize,
    pub budget: usize,
}

impl Shrinker<'_> {
    /// The failure of `case`, if it still fails.
    async fn fails(&mut self, case: &Case) -> Option<String> {
        if self.attempts >= self.budget {
            return None;
        }
        self.attempts += 1;
        let source = format!("{}_{}", self.prefix, self.attempts);
        let outcome = run_case(self.server, case, &source, self.root).await;
        drop_case(self.server, case, &source).await;
        outcome.failure
    }

    /// Keeps `candidate` if it fails; returns whether it did.
    async fn keep(&mut self, case: &mut Case, failure: &mut String, candidate: Case) -> bool {
        match self.fails(&candidate).await {
            Some(f) => {
                *case = candidate;
                *failure = f;
                true
            }
            None => false,
        }
    }

    pub async fn minimize(&mut self, mut case: Case, mut failure: String) -> (Case, String) {
        if case.views.len() > 1 {
            for view in case.views.clone() {
                let candidate = Case {
                    views: vec![view],
                    ..case.clone()
                };
                if self.keep(&mut case, &mut failure, candidate).await {
                    break;
                }
            }
        }
        if case.restart.is_some() {
            let candidate = Case {
                restart: None,
                ..case.clone()
            };
            self.keep(&mut case, &mut failure, candidate).await;
        }
        if case.files.len() > 1 {
            let candidate = Case {
                files: vec![case.lines.len()],
                ..case.clone()
            };
            self.keep(&mut case, &mut failure, candidate).await;
        }
        let mut chunk = case.lines.len() / 2;
        while chunk >= 1 {
            let mut at = 0;
            while at < case.lines.len() {
                let candidate = without_lines(&case, at, chunk);
                if !self.keep(&mut case, &mut failure, candidate).await {
                    at += chunk;
                }
            }
            chunk /= 2;
        }
        'simpler: loop {
            for view in simpler_views(&case.views[0]) {
                let candidate = Case {
                    views: vec![view],
                    ..case.clone()
                };
                if self.keep(&mut case, &mut failure, candidate).await {
                    continue 'simpler;
                }
            }
            break;
        }
        (case, failure)
    }
}

/// `case` without `count` lines from `at`; files keep their other lines.
fn without_lines(case: &Case, at: usize, count: usize) -> Case {
    let end = (at + count).min(case.lines.len());
    let mut lines = case.lines.clone();
    lines.drain(at..end);
    let mut files = Vec::new();
    let mut first = 0;
    for n in &case.files {
        let last = first + n;
        let removed = last.min(end).saturating_sub(first.max(at));
        if n - removed > 0 {
            files.push(n - removed);
        }
        first = last;
    }
    Case {
        lines,
        files,
        ..case.clone()
    }
}

/// One-step simplifications of a view: an aggregate less, no WHERE, no HAVING, a key less (and
/// the reads that name it), a read less.
fn simpler_views(view: &ViewSpec) -> Vec<ViewSpec> {
    let mut out = Vec::new();
    for i in 0..view.aggregates.len() {
        if view.aggregates.len() > 1 {
            let mut v = view.clone();
            v.aggregates.remove(i);
            out.push(v);
        }
    }
    if view.filter.is_some() {
        out.push(ViewSpec {
            filter: None,
            ..view.clone()
        });
    }
    if view.having.is_some() {
        out.push(ViewSpec {
            having: None,
            ..view.clone()
        });
    }
    for i in 0..view.keys.len() {
        let mut v = view.clone();
        let key = v.keys.remove(i);
        v.reads.retain(|r| !r.columns.contains(&key));
        out.push(v);
    }
    for i in 0..view.reads.len() {
        let mut v = view.clone();
        v.reads.remove(i);
        out.push(v);
    }
    out
}

/// A reproducer a person can run: the input lines and the statements.
pub fn reproducer(case: &Case, failure: &str) -> String {
    let dir = Path::new("/tmp/weir-repro");
    let mut out =
        String::from("mkdir -p /tmp/weir-repro && cat > /tmp/weir-repro/000.jsonl <<'EOF'\n");
    for line in &case.lines {
        out += &line.text();
        out.push('\n');
    }
    out += "EOF\n";
    if case.files.len() > 1 {
        out += &format!(
            "# (the test split these lines into {} files of {:?} lines, read in order)\n",
            case.files.len(),
            case.files
        );
    }
    if let Some(r) = case.restart {
        out += &format!("# (restart while running: {r:?})\n");
    }
    for sql in statements(case, "s", dir) {
        out += &sql;
        out += ";\n";
    }
    for (i, view) in case.views.iter().enumerate() {
        for read in &view.reads {
            let what = if read.count { "count(*)" } else { "*" };
            out += &read.sql(&format!("SELECT {what} FROM s_v{i}"));
            out += ";\n";
        }
    }
    out += &format!("-- failure: {failure}\n");
    out
}
