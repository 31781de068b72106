//! Structured run events on stderr: `<event> k=v ...` text lines by default, one JSON
//! object per line with `AETHERFLOW_LOG_FORMAT=json` (and then nothing but JSON).

use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::redact::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    /// `AETHERFLOW_LOG_LEVEL`; unknown names mean INFO, as in the reference.
    pub fn parse(s: &str) -> Level {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Level::Debug,
            "WARNING" | "WARN" => Level::Warning,
            "ERROR" | "CRITICAL" => Level::Error,
            _ => Level::Info,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Format {
        if s.trim().eq_ignore_ascii_case("json") {
            Format::Json
        } else {
            Format::Text
        }
    }
}

pub struct Observer {
    format: Format,
    min_level: Level,
    logger: Mutex<String>,
    sink: Mutex<Box<dyn Write + Send>>,
    /// Applied to every message and field before it is written.
    redactor: RwLock<Arc<Redactor>>,
}

impl Observer {
    pub fn stderr(format: Format, min_level: Level) -> Self {
        Observer {
            format,
            min_level,
            logger: Mutex::new("aetherflow".into()),
            sink: Mutex::new(Box::new(std::io::stderr())),
            redactor: RwLock::new(Arc::new(Redactor::default())),
        }
    }

    /// Mask these secrets (and values under secret-like keys) in every later event and
    /// message. Set once the resources are resolved.
    pub fn set_redactor(&self, redactor: Redactor) {
        if let Ok(mut r) = self.redactor.write() {
            *r = Arc::new(redactor);
        }
    }

    /// The current redactor (the runner uses it for what it writes to the state store).
    pub fn redactor(&self) -> Arc<Redactor> {
        self.redactor.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Events of a flow are logged as `aetherflow.flow.<flow_id>`.
    pub fn set_flow(&self, flow_id: &str) {
        if let Ok(mut l) = self.logger.lock() {
            *l = format!("aetherflow.flow.{flow_id}");
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// A structured event (`run_start`, `step_end`, ...).
    pub fn event(&self, level: Level, event: &str, fields: &[(&str, Value)]) {
        self.emit(level, "event", event, fields);
    }

    /// A plain log line (`Job success`, `Job failed: ...`); JSON mode keeps it JSON.
    pub fn message(&self, level: Level, message: &str, fields: &[(&str, Value)]) {
        self.emit(level, "message", message, fields);
    }

    fn emit(&self, level: Level, key: &str, text: &str, fields: &[(&str, Value)]) {
        if level < self.min_level {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let redactor = self.redactor();
        let text = redactor.redact_str(text);
        let fields: Vec<(&str, Value)> = fields
            .iter()
            .map(|(k, v)| {
                let v = if crate::redact::is_secret_key(k) && !v.is_null() {
                    Value::from(crate::redact::MASK)
                } else {
                    redactor.redact_value(v)
                };
                (*k, v)
            })
            .collect();
        let line = match self.format {
            Format::Json => {
                let mut m = Map::new();
                m.insert("ts_ms".into(), Value::from(now.as_millis() as u64));
                m.insert("level".into(), Value::from(level.name()));
                m.insert(key.into(), Value::from(text.as_ref()));
                for (k, v) in fields {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m).to_string()
            }
            Format::Text => {
                let logger = self.logger.lock().map(|l| l.clone()).unwrap_or_default();
                let mut s = format!("{} - {logger} - {} - {text}", timestamp(now), level.name());
                for (k, v) in &fields {
                    s.push(' ');
                    s.push_str(k);
                    s.push('=');
                    match v {
                        Value::String(x) => s.push_str(x),
                        other => s.push_str(&other.to_string()),
                    }
                }
                s
            }
        };
        if let Ok(mut sink) = self.sink.lock() {
            let _ = writeln!(sink, "{line}");
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS,mmm` in UTC (the reference's asctime layout).
fn timestamp(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil conversion.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(
            timestamp(std::time::Duration::from_millis(0)),
            "1970-01-01 00:00:00,000"
        );
        assert_eq!(
            timestamp(std::time::Duration::from_millis(1_795_512_157_123)),
            "2026-11-24 09:22:37,123"
        );
    }
}
