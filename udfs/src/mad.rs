//! `mad(x) -> DOUBLE`: the median absolute deviation of a group's values, `median(|x - median(x)|)`.
//!
//! A spread that one outlier cannot move, unlike the standard deviation: the usual base of a
//! robust anomaly threshold (`x > median + 3 * 1.4826 * mad`). Exact: the state keeps the
//! group's non-NULL values, as `median` does, so it grows with the group; use it per window.
//! NULL when the group has no values.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::aggregate_doc_sections::DOC_SECTION_STATISTICAL;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mad {
    signature: Signature,
}

impl Mad {
    pub fn new() -> Self {
        Self {
            // Every numeric type coerces to DOUBLE; text and others are a planning error.
            signature: Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for Mad {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for Mad {
    fn name(&self) -> &str {
        "mad"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format_state_name(args.name, "values"),
            Field::new_list_field(DataType::Float64, true),
            true,
        ))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<MadAccumulator>::default())
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_STATISTICAL,
                "Median absolute deviation of the values: median(|x - median(x)|), exact.",
                "mad(x)",
            )
            .build()
        }))
    }
}

#[derive(Debug, Default)]
struct MadAccumulator {
    values: Vec<f64>,
}

/// The median of `values` (sorted in place); None when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// `median(|x - median(x)|)`; None when empty.
pub fn median_absolute_deviation(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    let center = median(&mut sorted)?;
    let mut deviations: Vec<f64> = sorted.iter().map(|x| (x - center).abs()).collect();
    median(&mut deviations)
}

impl Accumulator for MadAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let input = values[0].as_primitive::<Float64Type>();
        self.values.extend(input.iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = Float64Array::from(self.values.clone());
        Ok(vec![
            SingleRowListArrayBuilder::new(Arc::new(values)).build_list_scalar()
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(median_absolute_deviation(
            &self.values,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mad_of_known_values() {
        // median 2, deviations 1,1,0,0,2,4,7 -> median 1.
        assert_eq!(
            median_absolute_deviation(&[1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0]),
            Some(1.0)
        );
        // Even count: median 2.5, deviations 1.5,0.5,0.5,1.5 -> 1.0.
        assert_eq!(median_absolute_deviation(&[1.0, 2.0, 3.0, 4.0]), Some(1.0));
        assert_eq!(median_absolute_deviation(&[]), None);
        // One outlier does not move it.
        assert_eq!(
            median_absolute_deviation(&[10.0, 10.0, 10.0, 11.0, 1e9]),
            Some(0.0)
        );
    }

    #[test]
    fn merged_states_equal_one_pass() {
        let all: Vec<f64> = (0..50).map(|i| ((i * 37) % 23) as f64).collect();
        let mut one = MadAccumulator::default();
        one.update_batch(&[Arc::new(Float64Array::from(all.clone()))])
            .unwrap();
        let mut merged = MadAccumulator::default();
        for part in all.chunks(7) {
            let mut partial = MadAccumulator::default();
            let mut input: Vec<Option<f64>> = part.iter().copied().map(Some).collect();
            input.push(None);
            partial
                .update_batch(&[Arc::new(Float64Array::from(input))])
                .unwrap();
            crate::merge_into(&mut merged, &mut partial);
        }
        assert_eq!(merged.evaluate().unwrap(), one.evaluate().unwrap());
    }
}
