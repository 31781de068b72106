//! Write AetherFlow steps in Rust.
//!
//! A step is a plain type implementing [`Step`]: it declares its [`Info`] (name, version,
//! JSON Schema of its inputs, the connectors it needs) and a `run` function taking typed,
//! serde-deserialised inputs. [`export_step!`] turns it into a WASI preview-2 component
//! implementing the `aetherflow:step` world; authors never touch `wit-bindgen` directly.
//!
//! ```ignore
//! use aetherflow_sdk::{export_step, Context, Error, Info, Outcome, Step};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Inputs { name: String }
//!
//! struct Hello;
//! impl Step for Hello {
//!     type Inputs = Inputs;
//!     fn info() -> Info {
//!         Info::new("hello", "0.1.0").schema(serde_json::json!({
//!             "type": "object", "required": ["name"],
//!             "properties": {"name": {"type": "string"}}
//!         }))
//!     }
//!     fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
//!         Outcome::success(serde_json::json!({ "greeting": format!("hello {}", inputs.name) }))
//!     }
//! }
//! export_step!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is a
//! component the engine loads from `AETHERFLOW_PLUGIN_PATHS`.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
pub use serde_json::{json, Value};

pub mod digest;
pub mod files;
pub mod http;
pub mod log;
pub mod mail;
pub mod pyfmt;
pub mod sql;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "aetherflow_sdk::bindings",
    });
}

use bindings::aetherflow::step::types as wit;

/// A JSON object: step outputs.
pub type Map = serde_json::Map<String, Value>;

/// Identity and locations of the running step attempt.
#[derive(Debug, Clone)]
pub struct Context {
    pub flow_id: String,
    pub run_id: String,
    pub job_id: String,
    pub step_id: String,
    pub step_type: String,
    pub attempt: u32,
    /// The job workspace (read-write); the only host directory the step can see.
    pub workspace: PathBuf,
    pub artifacts_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub manifests_dir: PathBuf,
}

impl Context {
    /// Resolve a file input the way every built-in step does: a relative path is taken
    /// relative to the job's artifacts directory; the result must stay inside the job
    /// workspace (the sandbox would refuse anything else anyway, this gives a clear error).
    pub fn resolve_path(&self, raw: &str) -> Result<PathBuf, Error> {
        let p = Path::new(raw);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.artifacts_dir.join(p)
        };
        let normal = normalize(&joined);
        if normal.starts_with(&self.workspace) {
            Ok(normal)
        } else {
            Err(Error::invalid_input(format!(
                "Path not under allowed roots: {raw}. Allowed roots: ['{}']",
                self.workspace.display()
            )))
        }
    }
}

/// Lexically normalise `.` and `..` (no filesystem access: symlinks are the sandbox's job).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// What a successful attempt returns.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success { outputs: Map },
    Skipped { outputs: Map, reason: String },
}

impl Outcome {
    /// Success with `outputs`, which must serialise to a JSON object.
    pub fn success(outputs: impl Serialize) -> Result<Self, Error> {
        Ok(Outcome::Success {
            outputs: to_map(outputs)?,
        })
    }

    /// Skipped with a reason (a flow can short-circuit its job with `on_no_data: skip_job`).
    pub fn skipped(reason: impl Into<String>, outputs: impl Serialize) -> Result<Self, Error> {
        Ok(Outcome::Skipped {
            outputs: to_map(outputs)?,
            reason: reason.into(),
        })
    }
}

fn to_map(v: impl Serialize) -> Result<Map, Error> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(Error::internal(format!(
            "step outputs must be a JSON object, got {other}"
        ))),
        Err(e) => Err(Error::internal(format!(
            "step outputs are not serialisable: {e}"
        ))),
    }
}

/// Classes of step failure; the host reports them with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    Connector,
    Io,
    Timeout,
    Internal,
}

/// A step failure: the step is recorded FAILED with this message.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn connector(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connector, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io(e.to_string())
    }
}

/// A connector the step needs: a resource of `kind`, named by the step input `input`.
#[derive(Debug, Clone)]
pub struct Capability {
    pub kind: String,
    pub input: String,
}

/// What `describe` reports.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    pub input_schema: Value,
    pub capabilities: Vec<Capability>,
}

impl Info {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
            capabilities: Vec::new(),
        }
    }
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// JSON Schema of the inputs; its `required` list is enforced before `run` is called.
    pub fn schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }
    /// Declare that the step uses a resource of `kind` named by the input `input`.
    pub fn needs(mut self, kind: impl Into<String>, input: impl Into<String>) -> Self {
        self.capabilities.push(Capability {
            kind: kind.into(),
            input: input.into(),
        });
        self
    }
}

/// Implement this for your step type and export it with [`export_step!`].
pub trait Step {
    type Inputs: DeserializeOwned;
    fn info() -> Info;
    fn run(ctx: &Context, inputs: Self::Inputs) -> Result<Outcome, Error>;
}

/// Export a [`Step`] implementation as the component's `describe`/`run`.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        #[doc(hidden)]
        pub struct __AetherflowStepExport;

        impl $crate::bindings::Guest for __AetherflowStepExport {
            fn describe() -> $crate::bindings::aetherflow::step::types::StepInfo {
                $crate::__private::describe::<$step>()
            }
            fn run(
                ctx: $crate::bindings::aetherflow::step::types::StepContext,
                inputs: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::bindings::aetherflow::step::types::StepResult,
                $crate::bindings::aetherflow::step::types::StepError,
            > {
                $crate::__private::run::<$step>(ctx, inputs)
            }
        }

        $crate::bindings::__export_step_world!(__AetherflowStepExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn describe<S: Step>() -> wit::StepInfo {
        let info = S::info();
        wit::StepInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            input_schema: info.input_schema.to_string(),
            capabilities: info
                .capabilities
                .into_iter()
                .map(|c| wit::Capability {
                    kind: c.kind,
                    input: c.input,
                })
                .collect(),
        }
    }

    pub fn run<S: Step>(
        ctx: wit::StepContext,
        inputs: String,
    ) -> Result<wit::StepResult, wit::StepError> {
        let ctx = Context {
            flow_id: ctx.flow_id,
            run_id: ctx.run_id,
            job_id: ctx.job_id,
            step_id: ctx.step_id,
            step_type: ctx.step_type,
            attempt: ctx.attempt,
            workspace: PathBuf::from(ctx.workspace),
            artifacts_dir: PathBuf::from(ctx.artifacts_dir),
            scratch_dir: PathBuf::from(ctx.scratch_dir),
            manifests_dir: PathBuf::from(ctx.manifests_dir),
        };
        let result = parse_inputs::<S>(&ctx, &inputs).and_then(|i| S::run(&ctx, i));
        match result {
            Ok(Outcome::Success { outputs }) => Ok(wit::StepResult {
                status: wit::Status::Success,
                outputs: Value::Object(outputs).to_string(),
                reason: None,
            }),
            Ok(Outcome::Skipped { outputs, reason }) => Ok(wit::StepResult {
                status: wit::Status::Skipped,
                outputs: Value::Object(outputs).to_string(),
                reason: Some(reason),
            }),
            Err(e) => Err(wit::StepError {
                kind: match e.kind {
                    ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
                    ErrorKind::Connector => wit::ErrorKind::Connector,
                    ErrorKind::Io => wit::ErrorKind::Io,
                    ErrorKind::Timeout => wit::ErrorKind::Timeout,
                    ErrorKind::Internal => wit::ErrorKind::Internal,
                },
                message: e.message,
            }),
        }
    }

    /// Serde deserialisation of the inputs straight from the host's JSON. The host has
    /// already checked that every input the schema's `required` list names is present (it
    /// does that for steps in any language, from `describe`), so no schema is built here.
    pub(crate) fn parse_inputs<S: Step>(ctx: &Context, raw: &str) -> Result<S::Inputs, Error> {
        serde_json::from_str(raw).map_err(|e| {
            // The position inside the one-line JSON the host sent means nothing to the
            // flow's author.
            let text = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            let text = text.strip_suffix(&at).unwrap_or(&text);
            Error::invalid_input(format!("Step {} has invalid inputs: {text}", ctx.step_id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            flow_id: "f".into(),
            run_id: "r".into(),
            job_id: "j".into(),
            step_id: "s".into(),
            step_type: "t".into(),
            attempt: 1,
            workspace: "/w/f/j/r".into(),
            artifacts_dir: "/w/f/j/r/artifacts".into(),
            scratch_dir: "/w/f/j/r/scratch".into(),
            manifests_dir: "/w/f/j/r/manifests".into(),
        }
    }

    #[test]
    fn relative_paths_resolve_under_artifacts() {
        assert_eq!(
            ctx().resolve_path("out/a.tsv").unwrap(),
            PathBuf::from("/w/f/j/r/artifacts/out/a.tsv")
        );
        assert_eq!(
            ctx().resolve_path("../scratch/x").unwrap(),
            PathBuf::from("/w/f/j/r/scratch/x")
        );
    }

    #[test]
    fn invalid_inputs_name_the_step_and_not_a_json_position() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inputs {
            count: u32,
        }
        struct S;
        impl Step for S {
            type Inputs = Inputs;
            fn info() -> Info {
                Info::new("s", "0")
            }
            fn run(_: &Context, _: Inputs) -> Result<Outcome, Error> {
                Outcome::success(json!({}))
            }
        }
        let e = __private::parse_inputs::<S>(&ctx(), r#"{"count": "x"}"#).unwrap_err();
        assert_eq!(
            e.message,
            "Step s has invalid inputs: invalid type: string \"x\", expected u32"
        );
        assert_eq!(
            __private::parse_inputs::<S>(&ctx(), r#"{"count": 3, "other": 1}"#)
                .unwrap()
                .count,
            3
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        let e = ctx().resolve_path("../../../../etc/passwd").unwrap_err();
        assert!(e
            .message
            .starts_with("Path not under allowed roots: ../../../../etc/passwd"));
        assert!(ctx().resolve_path("/etc/passwd").is_err());
    }
}
