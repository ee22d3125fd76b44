//! Stateful functions: per-entity models that learn as rows flow.
//!
//! `ewma_zscore`, `is_novel`, `anomaly_score` and `is_anomalous` score a row against what its
//! entity (the first argument) did before, then learn the row. They are registered like any
//! function, so queries plan and type-check them, but they only run inside a materialized
//! view: the view evaluates each call once per row, in arrival order, with the entities'
//! state kept in the view's store (see Weir's `operator::stateful`). Called from an ad-hoc
//! query they fail with an error that says so.

mod behaviour;
mod ewma;
mod novelty;

use std::sync::OnceLock;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMillisecondType};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

pub use behaviour::{Behaviour, Event, DEFAULT_THRESHOLD, DEFAULT_WEIGHTS, LEARNING, VALUES};
pub use ewma::{Ewma, DEFAULT_ALPHA, WARM_UP};
pub use novelty::{Novelty, MEMORY};

/// Which stateful function a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatefulKind {
    EwmaZscore,
    IsNovel,
    AnomalyScore,
    IsAnomalous,
}

/// What one entity has learnt for one call.
// Unboxed on purpose: a view keeps its entities' states inline in one list, so reaching an
// entity's baseline is one cache miss, not two (a box per entity was also one more allocation
// at each of a million entities).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EntityState {
    Ewma(Ewma),
    Novelty(Novelty),
    Behaviour(Behaviour),
}

impl EntityState {
    /// Appends the stored form to `out` (a writer encoding many states reuses one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            EntityState::Ewma(s) => s.encode(out),
            EntityState::Novelty(s) => s.encode(out),
            EntityState::Behaviour(s) => s.encode(out),
        }
    }
}

const BEHAVIOUR_ARGS: usize = 6;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

impl StatefulKind {
    pub const ALL: [StatefulKind; 4] = [
        StatefulKind::EwmaZscore,
        StatefulKind::IsNovel,
        StatefulKind::AnomalyScore,
        StatefulKind::IsAnomalous,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StatefulKind::EwmaZscore => "ewma_zscore",
            StatefulKind::IsNovel => "is_novel",
            StatefulKind::AnomalyScore => "anomaly_score",
            StatefulKind::IsAnomalous => "is_anomalous",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn return_type(self) -> DataType {
        match self {
            StatefulKind::EwmaZscore | StatefulKind::AnomalyScore => DataType::Float64,
            StatefulKind::IsNovel | StatefulKind::IsAnomalous => DataType::Boolean,
        }
    }

    /// The types a call's `n` arguments are cast to, or what is wrong with `n`.
    pub fn argument_types(self, n: usize) -> Result<Vec<DataType>, String> {
        let behaviour = [
            DataType::Utf8,
            ts(),
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Boolean,
        ];
        let (ok, expected) = match self {
            StatefulKind::EwmaZscore => (n == 2 || n == 3, "(entity, value [, alpha])"),
            StatefulKind::IsNovel => (n == 2, "(entity, value)"),
            StatefulKind::AnomalyScore => (
                n == BEHAVIOUR_ARGS || n == BEHAVIOUR_ARGS + 5,
                "(entity, ts, ip, geo, event_type, failed [, w_hour, w_ip, w_geo, w_type, w_failed])",
            ),
            StatefulKind::IsAnomalous => (
                n == BEHAVIOUR_ARGS || n == BEHAVIOUR_ARGS + 1 || n == BEHAVIOUR_ARGS + 6,
                "(entity, ts, ip, geo, event_type, failed [, threshold [, w_hour, w_ip, w_geo, w_type, w_failed]])",
            ),
        };
        if !ok {
            return Err(format!(
                "{} takes {expected}, not {n} arguments",
                self.name()
            ));
        }
        Ok(match self {
            StatefulKind::EwmaZscore => {
                [DataType::Utf8, DataType::Float64, DataType::Float64][..n].to_vec()
            }
            StatefulKind::IsNovel => vec![DataType::Utf8, DataType::Utf8],
            StatefulKind::AnomalyScore | StatefulKind::IsAnomalous => behaviour
                .into_iter()
                .chain(std::iter::repeat_n(DataType::Float64, n - BEHAVIOUR_ARGS))
                .collect(),
        })
    }

    /// A new entity's state.
    pub fn new_state(self) -> EntityState {
        match self {
            StatefulKind::EwmaZscore => EntityState::Ewma(Ewma::default()),
            StatefulKind::IsNovel => EntityState::Novelty(Novelty::default()),
            StatefulKind::AnomalyScore | StatefulKind::IsAnomalous => {
                EntityState::Behaviour(Behaviour::default())
            }
        }
    }

    /// A stored state of this kind, or None when the bytes are not one.
    pub fn decode_state(self, bytes: &[u8]) -> Option<EntityState> {
        Some(match self {
            StatefulKind::EwmaZscore => EntityState::Ewma(Ewma::decode(bytes)?),
            StatefulKind::IsNovel => EntityState::Novelty(Novelty::decode(bytes)?),
            StatefulKind::AnomalyScore | StatefulKind::IsAnomalous => {
                EntityState::Behaviour(Behaviour::decode(bytes)?)
            }
        })
    }

    /// Scores row `row` of `args` (cast to [`Self::argument_types`]; the entity not NULL)
    /// with `state`, then learns it. A NULL value scores NULL and teaches nothing.
    pub fn observe(self, state: &mut EntityState, args: &[ArrayRef], row: usize) -> ScalarValue {
        let f64_at = |i: usize| {
            args.get(i)
                .filter(|a| a.is_valid(row))
                .map(|a| a.as_primitive::<Float64Type>().value(row))
        };
        let str_at = |i: usize| {
            args.get(i)
                .filter(|a| a.is_valid(row))
                .map(|a| a.as_string::<i32>().value(row))
        };
        match (self, state) {
            (StatefulKind::EwmaZscore, EntityState::Ewma(s)) => ScalarValue::Float64(
                f64_at(1).and_then(|v| s.score_then_learn(v, f64_at(2).unwrap_or(DEFAULT_ALPHA))),
            ),
            (StatefulKind::IsNovel, EntityState::Novelty(s)) => {
                ScalarValue::Boolean(str_at(1).map(|v| s.observe(v)))
            }
            (StatefulKind::AnomalyScore | StatefulKind::IsAnomalous, EntityState::Behaviour(s)) => {
                let ts = &args[1];
                if ts.is_null(row) {
                    return ScalarValue::try_from(self.return_type()).unwrap_or(ScalarValue::Null);
                }
                let event = Event {
                    ts_ms: ts.as_primitive::<TimestampMillisecondType>().value(row),
                    ip: str_at(2),
                    geo: str_at(3),
                    event_type: str_at(4),
                    failed: args[5].is_valid(row) && args[5].as_boolean().value(row),
                };
                let first_weight = if self == StatefulKind::IsAnomalous {
                    7
                } else {
                    6
                };
                let mut weights = DEFAULT_WEIGHTS;
                if args.len() > first_weight {
                    for (k, w) in weights.iter_mut().enumerate() {
                        *w = f64_at(first_weight + k).unwrap_or(0.0);
                    }
                }
                let score = s.score_then_learn(event, &weights);
                if self == StatefulKind::IsAnomalous {
                    let threshold = f64_at(6).unwrap_or(DEFAULT_THRESHOLD);
                    ScalarValue::Boolean(Some(score >= threshold))
                } else {
                    ScalarValue::Float64(Some(score))
                }
            }
            (kind, state) => {
                // A state of another kind: start the entity afresh rather than mix models.
                *state = kind.new_state();
                kind.observe(state, args, row)
            }
        }
    }

    fn description(self) -> &'static str {
        match self {
            StatefulKind::EwmaZscore => "Stateful, in materialized views: z-score of value against the entity's exponentially weighted mean and variance before it; NULL for its first 10 values.",
            StatefulKind::IsNovel => "Stateful, in materialized views: true the first time the entity shows this value (remembers its last 4096 distinct values).",
            StatefulKind::AnomalyScore => "Stateful, in materialized views: 0..1, how unlike the entity's baseline (hour, IP, location, event type, failures) the event is; 0 for its first 100 events.",
            StatefulKind::IsAnomalous => "Stateful, in materialized views: anomaly_score(...) >= threshold (default 0.7).",
        }
    }

    fn syntax(self) -> String {
        let expected = match self.argument_types(0) {
            Err(message) => message,
            Ok(_) => String::new(),
        };
        // "name takes (...), not 0 arguments" -> "name(...)"
        let args = expected
            .split_once(" takes ")
            .and_then(|(_, rest)| rest.rsplit_once(", not "))
            .map_or("", |(args, _)| args);
        format!("{}{args}", self.name())
    }
}

/// The SQL face of a stateful function: plans and type-checks; refuses to run outside a view.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StatefulUdf {
    kind: StatefulKind,
    signature: Signature,
}

impl StatefulUdf {
    pub fn new(kind: StatefulKind) -> Self {
        Self {
            kind,
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for StatefulUdf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if let Err(message) = self.kind.argument_types(arg_types.len()) {
            return plan_err!("{message}");
        }
        Ok(self.kind.return_type())
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<Vec<Documentation>> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            StatefulKind::ALL
                .iter()
                .map(|k| {
                    Documentation::builder(DOC_SECTION_OTHER, k.description(), k.syntax()).build()
                })
                .collect()
        });
        let index = StatefulKind::ALL.iter().position(|k| *k == self.kind)?;
        docs.get(index)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.kind.name();
        exec_err!(
            "{name} keeps state per entity, so it runs in materialized views only: CREATE MATERIALIZED VIEW v AS SELECT ..., {name}(...) FROM <source>"
        )
    }
}

/// Every stateful function, as registered functions.
pub fn udfs() -> Vec<ScalarUDF> {
    StatefulKind::ALL
        .into_iter()
        .map(|k| ScalarUDF::new_from_impl(StatefulUdf::new(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn names_signatures_and_arity() {
        for kind in StatefulKind::ALL {
            assert_eq!(StatefulKind::from_name(kind.name()), Some(kind));
            assert!(
                kind.syntax()
                    .starts_with(&format!("{}(entity", kind.name())),
                "{}",
                kind.syntax()
            );
        }
        assert!(StatefulKind::EwmaZscore.argument_types(1).is_err());
        assert_eq!(
            StatefulKind::IsAnomalous.argument_types(7).unwrap().len(),
            7
        );
        assert!(StatefulKind::AnomalyScore.argument_types(7).is_err());
    }

    #[test]
    fn observes_rows_in_order_per_state() {
        let entity: ArrayRef = Arc::new(StringArray::from(vec!["a"; 12]));
        let values: ArrayRef = Arc::new(Float64Array::from_iter(
            (0..12).map(|i| Some(if i == 11 { 100.0 } else { (i % 2) as f64 })),
        ));
        let kind = StatefulKind::EwmaZscore;
        let mut state = kind.new_state();
        let out: Vec<ScalarValue> = (0..12)
            .map(|row| kind.observe(&mut state, &[entity.clone(), values.clone()], row))
            .collect();
        assert!(out[..10].iter().all(ScalarValue::is_null));
        assert!(matches!(out[11], ScalarValue::Float64(Some(z)) if z > 10.0));
        let mut bytes = Vec::new();
        state.encode_into(&mut bytes);
        let back = kind.decode_state(&bytes).unwrap();
        assert_eq!(back, state);
    }
}
