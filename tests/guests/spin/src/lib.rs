//! Loops forever: only the engine's deadline (epoch interruption) can stop it.
use aetherflow_sdk::{export_step, Context, Error, Info, Outcome, Step, Value};

struct Spin;
impl Step for Spin {
    type Inputs = Value;
    fn info() -> Info {
        Info::new("test_spin", "0.1.0")
    }
    fn run(_ctx: &Context, _inputs: Value) -> Result<Outcome, Error> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
export_step!(Spin);
