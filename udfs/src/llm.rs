//! `llm_analyze(prompt)`: an opt-in call to an OpenAI-compatible chat-completions endpoint for
//! each row an append-only view keeps.
//!
//! Registered like any function so that views plan and type-check it; Weir's view planner
//! lifts it out of the view's SELECT list and answers it off the ingest path (see Weir's
//! `llm` module). Called anywhere else it fails with an error that says where it runs.

use std::sync::OnceLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The function's SQL name.
pub const LLM_ANALYZE: &str = "llm_analyze";

/// The SQL face of `llm_analyze`: plans and type-checks; refuses to run outside a view.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmAnalyze {
    signature: Signature,
}

impl Default for LlmAnalyze {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for LlmAnalyze {
    fn name(&self) -> &str {
        LLM_ANALYZE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null] => {
                Ok(DataType::Utf8)
            }
            [other] => plan_err!(
                "llm_analyze(prompt) takes a text prompt, not {other}; build one with || or format(), e.g. llm_analyze('Explain this login: ' || user_id)"
            ),
            args => plan_err!(
                "llm_analyze takes one argument (the prompt text), not {}",
                args.len()
            ),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                "Opt-in, in append-only materialized views: the answer of the configured OpenAI-compatible endpoint ([llm] in the config) to the prompt, filled in once it arrives; NULL until then, or when [llm] is off.",
                "llm_analyze(prompt)",
            )
            .build()
        }))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "llm_analyze calls an LLM once for each row an append-only view keeps, so it runs only as a column of one: CREATE MATERIALIZED VIEW v AS SELECT *, llm_analyze(<prompt>) AS analysis FROM <source> WHERE ..."
        )
    }
}
