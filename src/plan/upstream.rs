//! Views over views: a view may read another view's *final* rows — the rows of its closed
//! windows, window by window in window order — as if they were a source.
//!
//! Only a windowed view (TUMBLE or HOP) has final rows: an append-only view's rows and a
//! plain GROUP BY's groups can still change or arrive out of order. The reading view's event
//! time is the upstream's `window_end` (or `window_start`, whichever it shows and, for a
//! windowed view, the one its TUMBLE/HOP names); its watermark follows the upstream's closed
//! windows, so it moves on even when a closed window had no rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use super::ddl::WatermarkDef;
use super::view::{GroupRole, SourceSchema, ViewPlan, WindowSpec, WINDOW_END, WINDOW_START};
use super::PlanError;

/// The view another view reads, and what its rows' event times are.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The view read.
    pub view: String,
    /// Its rows' columns (its output schema).
    pub schema: SchemaRef,
    /// Its windows: which of them are final follows from its watermark.
    pub window: WindowSpec,
    /// Its output columns that show its `window_start` and `window_end` unchanged, if any.
    pub start_column: Option<usize>,
    pub end_column: Option<usize>,
}

impl Upstream {
    /// The smallest value `column` can take in the upstream rows still to come, once its
    /// windows starting at or before `through` are final (`i64::MIN` if the column is
    /// neither window bound).
    pub fn next_time(&self, column: usize, through: i64) -> i64 {
        let slide = self.window.slide_ms();
        // Window starts are multiples of the slide; the next one after `through`.
        let next_start = through
            .div_euclid(slide)
            .saturating_mul(slide)
            .saturating_add(slide);
        if Some(column) == self.end_column {
            next_start.saturating_add(self.window.size_ms())
        } else if Some(column) == self.start_column {
            next_start
        } else {
            i64::MIN
        }
    }

    /// Whether `name` is one of the upstream's window bound columns in `schema`.
    fn is_time_column(&self, schema: &Schema, name: &str) -> bool {
        [self.start_column, self.end_column]
            .into_iter()
            .flatten()
            .any(|c| schema.field(c).name() == name)
    }
}

/// View `name` (planned as `plan`) as a source of another view.
pub fn view_as_source(name: &str, plan: &ViewPlan) -> Result<SourceSchema, PlanError> {
    if plan.append {
        return Err(PlanError::Unsupported(format!(
            "view \"{name}\" keeps rows as they arrive (it has no GROUP BY), so none of its rows is final in window order; a view reads the closed windows of a TUMBLE or HOP view: read \"{}\" itself instead",
            plan.source
        )));
    }
    let Some((window, _)) = plan.window else {
        return Err(PlanError::Unsupported(format!(
            "view \"{name}\" has no windows, so its rows are never final; a view reads the closed windows of a TUMBLE or HOP view"
        )));
    };
    let showing = |role: GroupRole| {
        plan.key_columns
            .iter()
            .position(|g| g.is_some_and(|g| plan.group_roles.get(g) == Some(&role)))
    };
    let upstream = Upstream {
        view: name.to_string(),
        schema: plan.output_schema.clone(),
        window,
        start_column: showing(GroupRole::WindowStart),
        end_column: showing(GroupRole::WindowEnd),
    };
    let watermark = upstream
        .end_column
        .or(upstream.start_column)
        .map(|c| WatermarkDef {
            column: plan.output_schema.field(c).name().clone(),
            delay_ms: 0,
        });
    Ok(SourceSchema {
        name: name.to_string(),
        schema: plan.output_schema.clone(),
        watermark,
        upstream: Some(upstream),
    })
}

/// A windowed view over a view windows its rows by the window bound it names (not
/// necessarily the one the watermark is on by default).
pub(super) fn watermark_for_window(source: &mut SourceSchema, column: &str) {
    if let Some(up) = &source.upstream {
        if up.is_time_column(&source.schema, column) {
            source.watermark = Some(WatermarkDef {
                column: column.to_string(),
                delay_ms: 0,
            });
        }
    }
}

/// The fields a windowed view plans over: the input's, then the new `window_start` and
/// `window_end`. An upstream view's own `window_start`/`window_end` columns are renamed
/// (`upstream_window_start`, ...): in the new view those names mean its own windows.
pub(super) fn windowed_input(source: &Schema, window_field: impl Fn(&str) -> Field) -> SchemaRef {
    let mut fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if f.name() == WINDOW_START || f.name() == WINDOW_END {
                let renamed = format!("upstream_{}", f.name());
                f.with_name(renamed)
            } else {
                f
            }
        })
        .collect();
    fields.push(window_field(WINDOW_START));
    fields.push(window_field(WINDOW_END));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_rows_of_an_upstream_start_after_its_last_final_window() {
        let up = Upstream {
            view: "u".into(),
            schema: Arc::new(Schema::empty()),
            window: WindowSpec::Hop {
                slide_ms: 10,
                size_ms: 30,
            },
            start_column: Some(0),
            end_column: Some(1),
        };
        // Windows starting at or before 25 are final: the next one starts at 30.
        assert_eq!(up.next_time(0, 25), 30);
        assert_eq!(up.next_time(1, 25), 60);
        assert_eq!(up.next_time(0, 30), 40);
        assert_eq!(up.next_time(0, -5), 0);
        assert_eq!(up.next_time(2, 25), i64::MIN);
    }
}
