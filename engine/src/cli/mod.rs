//! The command line. Exit codes (documented in the README): 0 success, 1 the run failed,
//! 2 invalid flow or usage.

mod doctor;
mod explain;
mod run;
mod runs;
mod steps;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "aetherflow",
    version,
    about = "YAML-first workflow engine whose steps run as sandboxed WebAssembly components",
    after_help = "Exit codes: 0 success, 1 the run failed, 2 invalid flow or usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a flow: jobs in order, steps in sequence, every transition recorded.
    Run(run::RunArgs),
    /// Check a flow (schema, semantics, templates) without running it.
    Validate(validate::ValidateArgs),
    /// Check that the environment has every variable, profile and secrets provider the
    /// flow needs (exit 2 if something is missing).
    Doctor(doctor::DoctorArgs),
    /// Show the profile, decode paths and merged configuration of each profiled resource,
    /// secrets masked.
    Explain(explain::ExplainArgs),
    /// Inspect recorded runs: `runs list`, `runs show RUN_ID`.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// The available step types: `steps list`, `steps show NAME` (origin, version,
    /// sha256, input schema, the connectors each asks for).
    #[command(subcommand)]
    Steps(steps::StepsCommand),
}

/// The flow file, given positionally or as `--flow-yaml` (the reference's spelling).
#[derive(Debug, Args)]
pub struct FlowArg {
    /// Path of the flow YAML.
    #[arg(value_name = "FLOW")]
    pub flow: Option<PathBuf>,
    /// Path of the flow YAML (same as the positional FLOW).
    #[arg(long = "flow-yaml", value_name = "FLOW")]
    pub flow_yaml: Option<PathBuf>,
}

impl FlowArg {
    pub fn path(&self) -> Result<PathBuf, String> {
        match (&self.flow, &self.flow_yaml) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "two different flow files given: `{}` and --flow-yaml `{}`; pass one",
                a.display(),
                b.display()
            )),
            (Some(a), _) => Ok(a.clone()),
            (None, Some(b)) => Ok(b.clone()),
            (None, None) => Err("a flow file is required: pass FLOW or --flow-yaml FLOW".into()),
        }
    }
}

/// What every command starts from: the flow path, the environment snapshot (read once,
/// with env files applied) and the settings. A problem is reported and mapped to exit 2.
pub(crate) fn setup(
    flow: &FlowArg,
) -> Result<
    (
        PathBuf,
        crate::settings::EnvSnapshot,
        crate::settings::Settings,
    ),
    i32,
> {
    let path = flow.path().map_err(|e| {
        crate::output::error(e);
        EXIT_INVALID
    })?;
    // The immutable snapshot: process env < AETHERFLOW_ENV_FILES_JSON files (parity §6.2).
    // Settings are read from it, so an env file can set them too.
    let env =
        crate::envfiles::snapshot_with_env_files(&crate::settings::process_env()).map_err(|e| {
            crate::output::error(e);
            EXIT_INVALID
        })?;
    let settings = crate::settings::Settings::from_env(&env).map_err(|e| {
        crate::output::error(e);
        EXIT_INVALID
    })?;
    Ok((path, env, settings))
}

/// Parse arguments, run the command, map the outcome to an exit code.
pub fn main() -> i32 {
    // A write past RLIMIT_FSIZE must fail the step that made it (EFBIG), not kill the
    // engine with SIGXFSZ in the middle of a state transition.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Validate(args) => validate::execute(args),
        Command::Doctor(args) => doctor::execute(args),
        Command::Explain(args) => explain::execute(args),
        Command::Runs(cmd) => runs::execute(cmd),
        Command::Steps(cmd) => steps::execute(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
