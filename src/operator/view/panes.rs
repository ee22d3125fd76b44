//! HOP by panes. A view whose windows are whole slides (`ViewPlan::panes`) aggregates each row
//! once, into the slide-sized pane its event time falls in, instead of once per window: five
//! times for a 10 s window sliding by 2 s. A pane's partial aggregate is merged into each of
//! its windows' partial aggregates when the oldest of those windows closes, or when the epoch
//! is written, whichever comes first; from there on the windows go on as without panes.
//!
//! A pane only ever takes rows whose windows were all open (`assign_windows` sends the others
//! to their open windows directly), and it is merged before any of its windows closes, so each
//! window sees exactly the rows it would have seen row by row.

use std::collections::btree_map::Entry;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

use super::{GroupState, ViewOperator, MAX_WINDOW_GROUPS_HINT};
use crate::plan::GroupRole;

impl ViewOperator {
    /// Folds `rows`, which fall in pane `start` and whose windows are all open, into the
    /// pane's partial aggregate; `origin` maps a row to its row in the applied batch.
    pub(super) fn fold_pane(
        &mut self,
        start: i64,
        rows: RecordBatch,
        origin: &dyn Fn(usize) -> u32,
    ) -> Result<()> {
        let input = self.evaluate_refusing(rows, origin)?;
        if input.is_empty() {
            return Ok(());
        }
        let pane = match self.panes.entry(start) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(GroupState::sized(
                &self.plan.aggregate,
                self.last_pane_groups,
            )?),
        };
        pane.update_evaluated(&input)
    }

    /// Merges every pane whose oldest window the `watermark` closed (every pane, given
    /// `i64::MAX`) into the partial aggregates of all its windows.
    pub(super) fn spill_panes(&mut self, watermark: i64) -> Result<()> {
        let Some((spec, _)) = self.plan.window else {
            return Ok(());
        };
        let (size, slide) = (spec.size_ms(), spec.slide_ms());
        let plan = Arc::clone(&self.plan);
        while let Some(entry) = self.panes.first_entry() {
            if entry.key().saturating_add(slide) > watermark {
                break;
            }
            let (pane, mut state) = entry.remove_entry();
            self.last_pane_groups = state.len().min(MAX_WINDOW_GROUPS_HINT);
            let snapshot = state.take_snapshot(&plan.aggregate)?;
            let mut start = pane - size + slide;
            while start <= pane {
                let constants = self.window_constants(start, start + size)?;
                self.window_delta(start)?
                    .merge_snapshot(&plan.aggregate, &snapshot, &constants)?;
                self.touched.insert(start);
                start += slide;
            }
        }
        Ok(())
    }

    /// The values of the view's window group columns in window `[start, end)`, in order.
    fn window_constants(&self, start: i64, end: i64) -> Result<Vec<ArrayRef>> {
        let group_schema = &self.plan.aggregate.group_schema;
        let mut constants = Vec::new();
        for (g, role) in self.plan.group_roles.iter().enumerate() {
            let value = match role {
                GroupRole::WindowStart => start,
                GroupRole::WindowEnd => end,
                GroupRole::Key => continue,
            };
            let array: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![value]));
            let wanted = group_schema.field(g).data_type();
            constants.push(if array.data_type() == wanted {
                array
            } else {
                cast(&array, wanted)?
            });
        }
        Ok(constants)
    }
}
