//! Does as much work, output and logging as its inputs ask: `burn` iterations of a hash
//! loop, an output string of `output_bytes` bytes, `log_lines` lines of `log_line_bytes`
//! bytes each, after sleeping `sleep_ms`. The engine's limits (fuel, output size, log volume) decide what passes.
use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    #[serde(default)]
    burn: u64,
    #[serde(default)]
    output_bytes: usize,
    #[serde(default)]
    log_lines: usize,
    #[serde(default = "default_line")]
    log_line_bytes: usize,
    #[serde(default)]
    sleep_ms: u64,
}

fn default_line() -> usize {
    100
}

struct Limits;
impl Step for Limits {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_limits", "0.1.0")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        std::thread::sleep(std::time::Duration::from_millis(inputs.sleep_ms));
        // FNV-1a over a counter: pure compute, no allocation.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for i in 0..inputs.burn {
            h ^= std::hint::black_box(i);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let line = "L".repeat(inputs.log_line_bytes);
        for _ in 0..inputs.log_lines {
            log::info(&line);
        }
        Outcome::success(json!({
            "checksum": h.to_string(),
            "blob": "x".repeat(inputs.output_bytes),
        }))
    }
}
export_step!(Limits);
