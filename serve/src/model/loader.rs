//! Loading one model version: ONNX bytes → graph fixes → one optimized tract
//! plan with a symbolic batch dimension, checked by a smoke run.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::Onnx;

use super::classifier::{self, Predictions};
use super::graph::{self, element_type, input_shape};
use super::input::FeatureMatrix;
use super::manifest::Manifest;
use super::signature::{ClassLabels, ElementType, Signature};
use crate::ServeError;

/// Why a model version could not be loaded. Reported per version; the server
/// keeps serving every model that did load.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is not a valid ONNX model: {reason}")]
    Decode { path: String, reason: String },
    #[error("{}", unsupported_message(.0))]
    UnsupportedOperators(Vec<(String, String)>),
    #[error("{0}")]
    Signature(String),
    #[error("invalid {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("tract cannot run the model: {0}")]
    Tract(String),
    #[error("{0}")]
    Repository(String),
}

fn unsupported_message(ops: &[(String, String)]) -> String {
    let list: Vec<String> = ops
        .iter()
        .map(|(domain, op)| format!("{op} in {domain}"))
        .collect();
    let plural = if ops.len() == 1 { "" } else { "s" };
    format!("unsupported operator{plural} {}", list.join(", "))
}

/// The text of a caught panic.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

fn tract_error(e: TractError) -> LoadError {
    // `{:#}` keeps tract's context chain, which names the failing node.
    LoadError::Tract(format!("{e:#}"))
}

/// One model version, ready to score.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
    /// sha256 of the ONNX file as loaded, for lineage.
    pub sha256: String,
    pub signature: Signature,
    pub manifest: Arc<Manifest>,
    pub load_time: Duration,
    plan: Arc<TypedRunnableModel>,
    /// The graph emits one score column, P(second class); we add the first.
    single_score_column: bool,
    /// When the graph's second output is the classifier op's label tensor:
    /// the label value of each class, to turn labels back into class indices.
    label_values: Option<Vec<i64>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("signature", &self.signature)
            .finish()
    }
}

/// tract's ONNX front end with our native ai.onnx.ml ops, built once.
fn onnx() -> &'static Onnx {
    static ONNX: OnceLock<Onnx> = OnceLock::new();
    ONNX.get_or_init(|| {
        let mut onnx = tract_onnx::onnx();
        super::ops::register(&mut onnx.op_register);
        onnx
    })
}

impl LoadedModel {
    pub fn load(
        name: &str,
        version: u64,
        path: &Path,
        manifest: Arc<Manifest>,
    ) -> Result<LoadedModel, LoadError> {
        let started = Instant::now();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let mut proto = onnx()
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| LoadError::Decode {
                path: shown.clone(),
                reason: format!("{e:#}"),
            })?;
        let graph = proto.graph.as_mut().ok_or_else(|| LoadError::Decode {
            path: shown.clone(),
            reason: "the file holds no graph".into(),
        })?;

        let classifier = graph::prepare_classifier(graph)?;
        let unsupported = graph::unsupported_ops(graph, |op| onnx().op_register.0.contains_key(op));
        if !unsupported.is_empty() {
            return Err(LoadError::UnsupportedOperators(unsupported));
        }
        let (input_name, input_type, features) = input_signature(graph, &manifest)?;

        let mut model = onnx().model_for_proto_model(&proto).map_err(tract_error)?;
        let rows = model.sym("N");
        let fact = TypedFact::dt_shape(
            input_type.datum_type(),
            tvec![rows.to_dim(), features.to_dim()],
        );
        model.set_input_fact(0, fact.into()).map_err(tract_error)?;
        let typed = model.into_optimized().map_err(tract_error)?;
        let columns = score_columns(&typed)?;
        let single_score_column = columns == 1;

        let labels = match (&manifest.labels, classifier.labels) {
            (Some(labels), _) => labels.clone(),
            (None, Some(labels)) => labels,
            (None, None) => ClassLabels::indices(if single_score_column { 2 } else { columns }),
        };
        let classes = if single_score_column { 2 } else { columns };
        if labels.len() != classes {
            return Err(LoadError::Signature(format!(
                "{} class labels ({}) for {classes} score columns",
                labels.len(),
                if manifest.labels.is_some() {
                    "from model.toml"
                } else {
                    "from the graph"
                },
            )));
        }

        // The classifier's own labels, when they cover exactly these classes.
        let label_values = classifier
            .label_output
            .map(|l| l.class_values)
            .filter(|values| values.len() == classes);
        let plan = typed.into_runnable().map_err(tract_error)?;
        let model = LoadedModel {
            name: name.to_string(),
            version,
            path: path.to_path_buf(),
            sha256,
            signature: Signature {
                input_name,
                input_type,
                features,
                labels,
                scores_output: classifier.scores,
            },
            manifest,
            load_time: Duration::ZERO,
            plan,
            single_score_column,
            label_values,
        };
        // A smoke run: a plan that cannot score one row must not be served.
        let zeros = FeatureMatrix::zeros(&model.signature, 1)
            .map_err(|e| LoadError::Tract(e.to_string()))?;
        model
            .predict(zeros)
            .map_err(|e| LoadError::Tract(e.to_string()))?;
        Ok(LoadedModel {
            load_time: started.elapsed(),
            ..model
        })
    }

    /// Scores every row of `features`.
    pub fn predict(&self, features: FeatureMatrix) -> Result<Predictions, ServeError> {
        let started = Instant::now();
        let rows = features.rows();
        let failed = |reason: String| ServeError::Inference {
            model: self.name.clone(),
            reason,
        };
        let run =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.run_plan(features.into_tensor())));
        let outputs = match run {
            Ok(result) => result.map_err(|e| failed(format!("{e:#}")))?,
            Err(panic) => {
                return Err(failed(format!(
                    "the runtime panicked: {}",
                    panic_message(&panic)
                )))
            }
        };
        let scores = outputs[0]
            .cast_to::<f32>()
            .map_err(|e| failed(format!("scores are not numeric: {e:#}")))?;
        let scores = scores
            .to_plain_array_view::<f32>()
            .map_err(|e| failed(e.to_string()))?;
        let scores = scores
            .as_slice()
            .ok_or_else(|| failed("scores are not contiguous".into()))?;
        let labels = match (&self.label_values, outputs.get(1)) {
            (Some(values), Some(labels)) => {
                Some(classifier::label_indices(labels, values).map_err(failed)?)
            }
            _ => None,
        };
        classifier::decode(
            scores,
            rows,
            self.signature.classes(),
            self.single_score_column,
            labels,
            started,
        )
        .map_err(failed)
    }

    /// Runs the plan on `input`, reusing this thread's tract state for it:
    /// setting one up for every run cost about a tenth of a small batch.
    /// A state that failed (or panicked) is dropped, never reused.
    fn run_plan(&self, input: Tensor) -> TractResult<TVec<TValue>> {
        // Per thread because states are not Send. A state holds its plan, so
        // a cached plan is never freed and never mistaken for another.
        thread_local! {
            static STATES: RefCell<Vec<TypedSimpleState>> = const { RefCell::new(Vec::new()) };
        }
        let cached = STATES.with_borrow_mut(|states| {
            let found = states
                .iter()
                .position(|state| Arc::ptr_eq(state.plan(), &self.plan));
            found.map(|ix| states.swap_remove(ix))
        });
        let mut state = match cached {
            Some(state) => state,
            None => self.plan.spawn()?,
        };
        let outputs = state.run(tvec![input.into()])?;
        STATES.with_borrow_mut(|states| {
            if states.len() >= STATES_PER_THREAD {
                states.remove(0);
            }
            states.push(state);
        });
        Ok(outputs)
    }
}

/// Model versions whose tract state a thread keeps (each holds its plan).
const STATES_PER_THREAD: usize = 8;

/// The one real (non-initializer) input, its element type and row width.
fn input_signature(
    graph: &mut GraphProto,
    manifest: &Manifest,
) -> Result<(String, ElementType, usize), LoadError> {
    let initializers: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let used: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    // Inputs the pruned graph no longer reads would become extra tract sources.
    let kept: Vec<_> = graph
        .input
        .iter()
        .filter(|i| initializers.contains(&i.name) || used.contains(i.name.as_str()))
        .cloned()
        .collect();
    graph.input = kept;
    let real: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name))
        .collect();
    let [input] = real.as_slice() else {
        let names: Vec<&str> = real.iter().map(|i| i.name.as_str()).collect();
        return Err(LoadError::Signature(format!(
            "expected one input tensor [rows, features], the graph has {}: {names:?}",
            names.len()
        )));
    };
    let code = element_type(input).unwrap_or(0);
    let input_type = ElementType::from_onnx(code).ok_or_else(|| {
        LoadError::Signature(format!(
            "input `{}` has ONNX element type {code}; supported: float, double, int32, int64",
            input.name
        ))
    })?;
    let shape = input_shape(input);
    let declared = match shape.as_deref() {
        Some([_, width]) => *width,
        Some(other) => {
            return Err(LoadError::Signature(format!(
                "input `{}` has rank {}; expected [rows, features]",
                input.name,
                other.len()
            )))
        }
        None => None,
    };
    let features = match (declared, manifest.features) {
        (Some(d), Some(m)) if d != m => {
            return Err(LoadError::Signature(format!(
                "model.toml says {m} features, input `{}` declares {d}",
                input.name
            )))
        }
        (Some(d), _) => d,
        (None, Some(0)) => {
            return Err(LoadError::Signature(
                "model.toml says 0 features".to_string(),
            ))
        }
        (None, Some(m)) => m,
        (None, None) => {
            return Err(LoadError::Signature(format!(
                "input `{}` does not declare its feature count; set `features` in model.toml",
                input.name
            )))
        }
    };
    Ok((input.name.clone(), input_type, features))
}

/// Columns of the score output: `[rows, columns]`, or `[rows]` as one column.
fn score_columns(model: &TypedModel) -> Result<usize, LoadError> {
    let fact = model.output_fact(0).map_err(tract_error)?;
    match fact.shape.dims() {
        [_] => Ok(1),
        [_, columns] => columns.to_usize().map_err(|_| {
            LoadError::Signature(format!(
                "the score output has a symbolic class count {columns}"
            ))
        }),
        dims => Err(LoadError::Signature(format!(
            "the score output has shape {dims:?}; expected [rows, classes]"
        ))),
    }
}
