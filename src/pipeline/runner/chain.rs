//! Views over views in a pipeline: each epoch records which windows of every view are final
//! once it is written; after that write, each view over a view reads the windows its upstream
//! made durably final (see `operator::view::chain`).

use super::Operators;
use crate::decode::DeadLetter;
use crate::state::WriteSet;

impl Operators {
    /// Each view's windows final once its last flush is written.
    pub(super) fn finals(&self) -> Vec<(String, Option<i64>)> {
        self.views
            .iter()
            .map(|v| (v.name.clone(), v.final_through()))
            .collect()
    }

    /// What the store holds final of view `name`'s windows (`i64::MAX`: all of them).
    fn durable_final_of(&self, name: &str) -> Option<i64> {
        self.durable_final.get(name).copied().flatten()
    }

    /// Whether some view over a view has final upstream rows in the store to read.
    pub(super) fn chained_pending(&self) -> bool {
        self.views.iter().any(|v| {
            v.upstream()
                .is_some_and(|up| v.upstream_pending(self.durable_final_of(&up.view)))
        })
    }

    /// A view over a view whose upstream did not load (or is not of this source) fails.
    pub(super) fn check_upstreams(&mut self) {
        for view in &mut self.views {
            let Some(up) = view.upstream() else { continue };
            if !self.durable_final.contains_key(&up.view) {
                let error = format!("the view it reads, \"{}\", is not running", up.view);
                view.fail(error);
            }
        }
    }

    /// Views over views read the upstream rows the store holds final (the previous epoch
    /// is written), then add their changes to `ws`; rows they refuse become dead letters.
    pub(super) fn feed_chained(&mut self, ws: &mut WriteSet, age_check: Option<i64>) {
        for i in 0..self.views.len() {
            let Some(up) = self.views[i].upstream().map(|u| u.view.clone()) else {
                continue;
            };
            let through = self.durable_final_of(&up);
            let upstream_failed = self.views.iter().any(|v| v.name == up && v.is_failed());
            let view = &mut self.views[i];
            if upstream_failed && !view.is_failed() {
                // What the upstream closed before it failed was read; nothing more comes.
                view.fail(format!("the view it reads, \"{up}\", failed"));
            }
            let fed = view
                .feed_from_upstream(through)
                .and_then(|()| view.flush(ws, age_check));
            if let Err(e) = fed {
                view.fail(e.to_string());
                view.write_progress(ws);
            }
            for row in view.take_refused() {
                self.dead.push(DeadLetter {
                    position: format!("{up} row {}", row.end),
                    raw: row.raw,
                    error: format!("view {}: {}", view.name, row.error),
                    at_ms: 0,
                    end: row.end,
                });
            }
        }
    }
}
