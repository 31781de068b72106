//! `aetherflow validate`: text `OK:`/`INVALID:` lines or the JSON report; exit 2 if invalid.

use clap::Args;

use super::{FlowArg, EXIT_INVALID, EXIT_OK};
use crate::output;
use crate::validate::{validate_flow, Report};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub flow: FlowArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: ValidateArgs) -> i32 {
    let (path, env, settings) = match super::setup(&args.flow) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let registry = match super::run::registry(&settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match validate_flow(&path, &env, &registry) {
        Ok(v) => {
            print_report(&v.report, args.json);
            if v.report.ok {
                EXIT_OK
            } else {
                EXIT_INVALID
            }
        }
        Err(e) => {
            output::error(e);
            EXIT_INVALID
        }
    }
}

pub fn print_report(report: &Report, json: bool) {
    if json {
        output::json(&report.to_json());
        return;
    }
    if report.ok {
        output::result(format!("OK: {}", report.flow_yaml));
    } else {
        output::result(format!("INVALID: {}", report.flow_yaml));
        for e in &report.errors {
            output::result(format!(
                "- {}: {} - {}{}",
                e.loc,
                e.code,
                e.msg,
                at(report, e)
            ));
        }
    }
    for w in report.warnings.iter().flatten() {
        output::result(format!(
            "! {}: {} - {}{}",
            w.loc,
            w.code,
            w.msg,
            at(report, w)
        ));
    }
}

fn at(report: &Report, issue: &aetherflow_spec::Issue) -> String {
    issue
        .pos
        .map(|p| format!(" (at {}:{})", report.flow_yaml, p))
        .unwrap_or_default()
}
