//! `zscore_max(x) -> DOUBLE`: the largest |z-score| of any value of the group against the
//! group's own mean and sample standard deviation: `max(|x - avg(x)|) / stddev(x)`.
//!
//! How far the most extreme value of a window stands out from its window, in standard
//! deviations. The state is fixed-size (count, mean, sum of squared deviations, min, max;
//! Welford's update, Chan's merge), so it suits any group size. NULL with fewer than two
//! values; 0 when all values are equal.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::aggregate_doc_sections::DOC_SECTION_STATISTICAL;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ZscoreMax {
    signature: Signature,
}

impl ZscoreMax {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for ZscoreMax {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for ZscoreMax {
    fn name(&self) -> &str {
        "zscore_max"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |part: &str, t: DataType| {
            Arc::new(Field::new(format_state_name(args.name, part), t, true))
        };
        Ok(vec![
            field("count", DataType::Int64),
            field("mean", DataType::Float64),
            field("m2", DataType::Float64),
            field("min", DataType::Float64),
            field("max", DataType::Float64),
        ])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<Moments>::default())
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_STATISTICAL,
                "Largest |z-score| of a value against the group's mean and sample standard deviation.",
                "zscore_max(x)",
            )
            .build()
        }))
    }
}

/// Count, mean, sum of squared deviations from the mean, min and max of the values seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    count: i64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Adds one value (Welford).
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Adds the values another summary saw (Chan et al.).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The largest |z| of a value seen; None below two values.
    pub fn zscore_max(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let sd = (self.m2 / (self.count - 1) as f64).sqrt();
        let spread = (self.max - self.mean).max(self.mean - self.min);
        Some(if sd > 0.0 { spread / sd } else { 0.0 })
    }
}

impl Accumulator for Moments {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.add(x);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let count = states[0].as_primitive::<Int64Type>();
        let column = |i: usize| states[i].as_primitive::<Float64Type>();
        let (mean, m2, min, max) = (column(1), column(2), column(3), column(4));
        for row in 0..count.len() {
            if count.is_null(row) {
                continue;
            }
            self.merge(&Moments {
                count: count.value(row),
                mean: mean.value(row),
                m2: m2.value(row),
                min: min.value(row),
                max: max.value(row),
            });
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Float64(Some(self.mean)),
            ScalarValue::Float64(Some(self.m2)),
            ScalarValue::Float64(Some(self.min)),
            ScalarValue::Float64(Some(self.max)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.zscore_max()))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Moments {
        let mut m = Moments::default();
        values.iter().for_each(|x| m.add(*x));
        m
    }

    #[test]
    fn largest_deviation_in_sample_standard_deviations() {
        // mean 3, sample sd sqrt(2.5); the farthest values are 2 away.
        let z = of(&[1.0, 2.0, 3.0, 4.0, 5.0]).zscore_max().unwrap();
        assert!((z - 2.0 / 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(of(&[7.0]).zscore_max(), None);
        assert_eq!(of(&[4.0, 4.0, 4.0]).zscore_max(), Some(0.0));
    }

    #[test]
    fn merged_summaries_equal_one_pass() {
        let all: Vec<f64> = (0..100).map(|i| ((i * 7919) % 101) as f64 / 3.0).collect();
        let one = of(&all);
        let mut merged = Moments::default();
        for part in all.chunks(13) {
            merged.merge(&of(part));
        }
        assert_eq!(merged.count, one.count);
        assert!((merged.zscore_max().unwrap() - one.zscore_max().unwrap()).abs() < 1e-9);
    }
}
