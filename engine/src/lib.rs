//! AetherFlow-RS: a YAML-first, CLI-first workflow engine whose step logic runs as
//! sandboxed WebAssembly components (WASI preview 2), hosted by wasmtime.
//!
//! The native engine owns resolution, state, locks and connectors; a step is a
//! capability-limited component that calls back into host connectors it was granted.

pub mod cli;
pub mod connectors;
pub mod envfiles;
pub mod native;
pub mod observe;
pub mod output;
pub mod policy;
pub mod redact;
pub mod resources;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod settings;
pub mod steps;
pub mod validate;
