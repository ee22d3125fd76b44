//! `approx_top_k(x, k) -> LIST<STRUCT<value TEXT, count BIGINT>>`: the k most frequent values
//! of a group, most frequent first (ties by value), with their counts.
//!
//! A mergeable Misra–Gries summary of `C = max(10·k, 100)` counters: counts are exact while the
//! group has at most C distinct values; beyond that a value's count may be low by at most
//! n/(C+1) for a group of n values, and any value more frequent than n/(C+1) is kept. Values
//! are compared as text (any type is cast to TEXT); NULLs are not counted. `k` must be a
//! constant from 1 to 1,000.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::aggregate_doc_sections::DOC_SECTION_APPROXIMATE;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, Documentation, Signature, Volatility,
};

/// The largest k accepted.
pub const MAX_K: i64 = 1000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxTopK {
    signature: Signature,
}

impl ApproxTopK {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ApproxTopK {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of one entry of the result.
fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("value", DataType::Utf8, true),
        Field::new("count", DataType::Int64, false),
    ])
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(entry_fields()),
        true,
    )))
}

impl AggregateUDFImpl for ApproxTopK {
    fn name(&self) -> &str {
        "approx_top_k"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, k] = arg_types else {
            return plan_err!(
                "approx_top_k takes two arguments, (value, k), not {}",
                arg_types.len()
            );
        };
        if !k.is_integer() {
            return plan_err!("approx_top_k's k must be an integer constant, not {k}");
        }
        if value.is_nested() {
            return plan_err!("approx_top_k counts scalar values, not {value}");
        }
        Ok(vec![DataType::Utf8, DataType::Int64])
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new_list(
                format_state_name(args.name, "values"),
                Field::new_list_field(DataType::Utf8, true),
                true,
            )),
            Arc::new(Field::new_list(
                format_state_name(args.name, "counts"),
                Field::new_list_field(DataType::Int64, true),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // A constant evaluates to a scalar over any batch, even an empty one.
        let empty = RecordBatch::new_empty(Arc::new(args.schema.clone()));
        let k = match args.exprs.get(1).map(|e| e.evaluate(&empty)) {
            Some(Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(k))))) => Some(k),
            _ => None,
        };
        match k {
            Some(k) if (1..=MAX_K).contains(&k) => Ok(Box::new(TopK::new(k as usize))),
            Some(k) => plan_err!("approx_top_k's k must be from 1 to {MAX_K}, not {k}"),
            None => plan_err!("approx_top_k's k must be a constant integer"),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_APPROXIMATE,
                "The k most frequent values with their counts (Misra-Gries summary; exact up to max(10k, 100) distinct values).",
                "approx_top_k(x, k)",
            )
            .build()
        }))
    }
}

/// A Misra–Gries summary that reports its k largest counters.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    capacity: usize,
    counts: HashMap<String, i64>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            capacity: (10 * k).max(100),
            counts: HashMap::new(),
        }
    }

    pub fn add(&mut self, value: &str, count: i64) {
        match self.counts.get_mut(value) {
            Some(c) => *c += count,
            None => {
                self.counts.insert(value.to_string(), count);
            }
        }
        // Prune lazily: a summary may hold up to twice its counters between prunes.
        if self.counts.len() > 2 * self.capacity {
            self.prune();
        }
    }

    /// Keeps at most `capacity` counters: subtracts the (capacity+1)-th largest count from
    /// every counter and drops those that reach zero.
    fn prune(&mut self) {
        if self.counts.len() <= self.capacity {
            return;
        }
        let mut all: Vec<i64> = self.counts.values().copied().collect();
        all.select_nth_unstable_by(self.capacity, |a, b| b.cmp(a));
        let cut = all[self.capacity];
        self.counts.retain(|_, c| {
            *c -= cut;
            *c > 0
        });
    }

    /// The k largest counters, largest first, ties by value.
    pub fn top(&mut self) -> Vec<(&str, i64)> {
        self.prune();
        let mut entries: Vec<(&str, i64)> =
            self.counts.iter().map(|(v, c)| (v.as_str(), *c)).collect();
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        entries.truncate(self.k);
        entries
    }
}

fn list_scalar(values: ArrayRef) -> ScalarValue {
    SingleRowListArrayBuilder::new(values).build_list_scalar()
}

impl Accumulator for TopK {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in values[0].as_string::<i32>().iter().flatten() {
            self.add(value, 1);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, counts) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (v, c) = (values.value(row), counts.value(row));
            let (v, c) = (v.as_string::<i32>(), c.as_primitive::<Int64Type>());
            for i in 0..v.len() {
                if !v.is_null(i) && !c.is_null(i) {
                    self.add(v.value(i), c.value(i));
                }
            }
        }
        self.prune();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.prune();
        let mut entries: Vec<(&String, &i64)> = self.counts.iter().collect();
        // A stable order, so equal summaries store equal bytes.
        entries.sort_unstable();
        let values: StringArray = entries.iter().map(|(v, _)| Some(v.as_str())).collect();
        let counts: Int64Array = entries.iter().map(|(_, c)| Some(**c)).collect();
        Ok(vec![
            list_scalar(Arc::new(values)),
            list_scalar(Arc::new(counts)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let top = self.top();
        let values: StringArray = top.iter().map(|(v, _)| Some(*v)).collect();
        let counts: Int64Array = top.iter().map(|(_, c)| Some(*c)).collect();
        let entries = StructArray::new(
            entry_fields(),
            vec![Arc::new(values) as ArrayRef, Arc::new(counts)],
            None,
        );
        let list = ListArray::new(
            Arc::new(Field::new_list_field(
                DataType::Struct(entry_fields()),
                true,
            )),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([entries.len()]),
            Arc::new(entries),
            None,
        );
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.keys().map(|k| k.capacity() + 48).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_capacity_most_frequent_first() {
        let mut t = TopK::new(2);
        for v in ["a", "b", "a", "c", "b", "a", "d"] {
            t.add(v, 1);
        }
        assert_eq!(t.top(), vec![("a", 3), ("b", 2)]);
    }

    #[test]
    fn heavy_hitters_survive_many_distinct_values() {
        let mut t = TopK::new(3);
        for i in 0..20_000 {
            t.add(&format!("noise{i}"), 1);
            if i % 4 == 0 {
                t.add("heavy", 1);
            }
            if i % 10 == 0 {
                t.add("medium", 1);
            }
        }
        let top = t.top();
        assert_eq!(top[0].0, "heavy");
        assert_eq!(top[1].0, "medium");
        // Low by at most n / (C + 1) = 27,000 / 101.
        assert!(5000 - top[0].1 <= 27_000 / 101, "{top:?}");
        assert!(t.counts.len() <= t.capacity);
    }

    #[test]
    fn merged_summaries_equal_one_pass_when_exact() {
        let values: Vec<String> = (0..300).map(|i| format!("v{}", (i * i) % 37)).collect();
        let mut one = TopK::new(5);
        values.iter().for_each(|v| one.add(v, 1));
        let mut merged = TopK::new(5);
        for part in values.chunks(41) {
            let mut partial = TopK::new(5);
            let input: StringArray = part.iter().map(|v| Some(v.as_str())).collect();
            partial.update_batch(&[Arc::new(input)]).unwrap();
            crate::merge_into(&mut merged, &mut partial);
        }
        assert_eq!(merged.evaluate().unwrap(), one.evaluate().unwrap());
    }
}
