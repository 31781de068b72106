//! Structured logging through the host: lines carry the flow/run/job/step ids.

use crate::bindings::aetherflow::step::log as wit;
use serde_json::Value;

pub use wit::Level;

/// Log `message` with extra `fields` (a JSON object; anything else is sent as `{}`).
pub fn log(level: Level, message: &str, fields: &Value) {
    let fields = if fields.is_object() {
        fields.to_string()
    } else {
        "{}".to_string()
    };
    wit::log(level, message, &fields);
}

pub fn debug(message: impl AsRef<str>) {
    wit::log(Level::Debug, message.as_ref(), "{}");
}

pub fn info(message: impl AsRef<str>) {
    wit::log(Level::Info, message.as_ref(), "{}");
}

pub fn warn(message: impl AsRef<str>) {
    wit::log(Level::Warn, message.as_ref(), "{}");
}

pub fn error(message: impl AsRef<str>) {
    wit::log(Level::Error, message.as_ref(), "{}");
}
