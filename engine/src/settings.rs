//! The immutable environment snapshot and the settings read from it. The process
//! environment is read once, here, and never mutated; everything else reads the snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::observe::{Format, Level};

/// `env.*` for templates, and the source of every setting.
pub type EnvSnapshot = BTreeMap<String, String>;

pub fn process_env() -> EnvSnapshot {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The `{env: ...}` template scope of the resource and flow-meta phases.
pub fn env_scope(env: &EnvSnapshot) -> serde_json::Map<String, serde_json::Value> {
    let vars = env
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    let mut scope = serde_json::Map::new();
    scope.insert("env".into(), serde_json::Value::Object(vars));
    scope
}

/// How state commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSync {
    /// One fsync per step: a committed step survives power loss (default).
    Full,
    /// No fsync per commit: a committed step survives a process crash, not power loss.
    Normal,
}

/// `AETHERFLOW_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `internal_fast` (the reference's name) or unset: plugins from
    /// `AETHERFLOW_PLUGIN_PATHS`, pins optional.
    #[default]
    InternalFast,
    /// `enterprise`: only components the flow pins, no ambient plugin paths,
    /// `external.process` only when the flow's `settings` allow it (docs/provenance.md).
    Enterprise,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub log_level: Level,
    pub log_format: Format,
    pub plugin_paths: Vec<PathBuf>,
    pub plugin_strict: bool,
    /// Where precompiled components are cached; `None` disables the cache.
    pub component_cache: Option<PathBuf>,
    pub step_timeout: Duration,
    pub step_memory_bytes: usize,
    /// `AETHERFLOW_STEP_FUEL`: the fuel budget of a step without `limits.fuel` (`None`: no
    /// budget, except under `determinism: strict`, see [`DEFAULT_STRICT_FUEL`]).
    pub step_fuel: Option<u64>,
    /// `AETHERFLOW_STEP_MAX_OUTPUT_BYTES`: largest JSON text of a step's outputs.
    pub step_max_output_bytes: u64,
    /// `AETHERFLOW_STEP_MAX_LOG_BYTES`: log volume one attempt may emit.
    pub step_max_log_bytes: u64,
    /// `AETHERFLOW_MAX_COMPONENT_BYTES`: plugin components larger than this are refused
    /// when they are loaded.
    pub max_component_bytes: u64,
    pub state_sync: StateSync,
    /// `AETHERFLOW_CONNECTOR_CACHE_DEFAULT` (`run`|`process`|`none`; unknown means `run`).
    pub connector_cache: crate::connectors::CachePolicy,
    /// `AETHERFLOW_CONNECTOR_CACHE_DISABLED=true`: no connection is reused.
    pub connector_cache_disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid {var}=`{value}`: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Default of `AETHERFLOW_STEP_MAX_OUTPUT_BYTES`.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// Default of `AETHERFLOW_STEP_MAX_LOG_BYTES`.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 8 << 20;
/// Default of `AETHERFLOW_MAX_COMPONENT_BYTES`: room for interpreters compiled to a
/// component (componentize-py embeds CPython, about 40 MB).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 128 << 20;
/// The fuel budget of a `determinism: strict` step that has none from `limits.fuel` or
/// `AETHERFLOW_STEP_FUEL`: a strict step must end the same way on every run, which a
/// wall-clock deadline cannot promise.
pub const DEFAULT_STRICT_FUEL: u64 = 1_000_000_000_000;

/// Only the literal `true` (any case) is true, as in the reference.
fn flag(env: &EnvSnapshot, key: &str, default: bool) -> bool {
    match env.get(key) {
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => default,
    }
}

impl Settings {
    pub fn from_env(env: &EnvSnapshot) -> Result<Settings, SettingsError> {
        let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let plugin_paths = get("AETHERFLOW_PLUGIN_PATHS")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let component_cache = match get("AETHERFLOW_COMPONENT_CACHE") {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            _ => Some(match get("AETHERFLOW_CACHE_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => dirs::cache_dir()
                    .unwrap_or_else(std::env::temp_dir)
                    .join("aetherflow")
                    .join("components"),
            }),
        };
        let step_timeout = match get("AETHERFLOW_STEP_TIMEOUT_SECONDS") {
            None => Duration::from_secs(3600),
            Some(v) => parse_seconds(v).ok_or(SettingsError::Invalid {
                var: "AETHERFLOW_STEP_TIMEOUT_SECONDS",
                value: v.into(),
                why: "expected a positive number of seconds",
            })?,
        };
        let step_memory_bytes = match get("AETHERFLOW_STEP_MEMORY_MB") {
            None => 1024 << 20,
            Some(v) => match v.parse::<usize>() {
                Ok(mb) if mb > 0 && mb <= 4096 => mb << 20,
                _ => {
                    return Err(SettingsError::Invalid {
                        var: "AETHERFLOW_STEP_MEMORY_MB",
                        value: v.into(),
                        why: "expected a whole number of MiB between 1 and 4096",
                    })
                }
            },
        };
        // The reference takes any other text as `internal_fast`; a typo must not quietly
        // turn enterprise mode off.
        let mode = match get("AETHERFLOW_MODE")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("internal_fast") => Mode::InternalFast,
            Some("enterprise") => Mode::Enterprise,
            Some(_) => {
                return Err(SettingsError::Invalid {
                    var: "AETHERFLOW_MODE",
                    value: get("AETHERFLOW_MODE").unwrap_or_default().into(),
                    why: "expected `enterprise` or `internal_fast` (the default)",
                })
            }
        };
        let step_fuel = match get("AETHERFLOW_STEP_FUEL") {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("none") => None,
            Some(v) => match v.replace('_', "").parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(SettingsError::Invalid {
                        var: "AETHERFLOW_STEP_FUEL",
                        value: v.into(),
                        why: "expected a whole number of fuel units greater than 0, or `none`",
                    })
                }
            },
        };
        let size = |var: &'static str, default: u64| -> Result<u64, SettingsError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match aetherflow_spec::parse_size(v) {
                    Some(n) if n > 0 => Ok(n),
                    _ => Err(SettingsError::Invalid {
                        var,
                        value: v.into(),
                        why: "expected a size greater than 0: bytes, or a number with a unit such as `16 MiB`",
                    }),
                },
            }
        };
        let step_max_output_bytes =
            size("AETHERFLOW_STEP_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES)?;
        let step_max_log_bytes = size("AETHERFLOW_STEP_MAX_LOG_BYTES", DEFAULT_MAX_LOG_BYTES)?;
        let max_component_bytes = size(
            "AETHERFLOW_MAX_COMPONENT_BYTES",
            DEFAULT_MAX_COMPONENT_BYTES,
        )?;
        let state_sync = match get("AETHERFLOW_STATE_SYNC")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("full") => StateSync::Full,
            Some("normal") => StateSync::Normal,
            Some(_) => {
                return Err(SettingsError::Invalid {
                    var: "AETHERFLOW_STATE_SYNC",
                    value: get("AETHERFLOW_STATE_SYNC").unwrap_or_default().into(),
                    why: "expected `full` (power-loss safe) or `normal` (process-crash safe)",
                })
            }
        };
        Ok(Settings {
            mode,
            log_level: Level::parse(get("AETHERFLOW_LOG_LEVEL").unwrap_or("INFO")),
            log_format: Format::parse(get("AETHERFLOW_LOG_FORMAT").unwrap_or("text")),
            plugin_paths,
            plugin_strict: flag(env, "AETHERFLOW_PLUGIN_STRICT", true),
            component_cache,
            step_timeout,
            step_memory_bytes,
            step_fuel,
            step_max_output_bytes,
            step_max_log_bytes,
            max_component_bytes,
            state_sync,
            connector_cache: crate::connectors::CachePolicy::parse(
                get("AETHERFLOW_CONNECTOR_CACHE_DEFAULT").unwrap_or("run"),
            ),
            connector_cache_disabled: flag(env, "AETHERFLOW_CONNECTOR_CACHE_DISABLED", false),
        })
    }
}

/// A positive, finite number of seconds.
pub fn parse_seconds(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_env(
            &vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn limit_defaults_and_overrides() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.step_fuel, None);
        assert_eq!(s.step_max_output_bytes, 16 << 20);
        assert_eq!(s.step_max_log_bytes, 8 << 20);
        assert_eq!(s.max_component_bytes, 128 << 20);
        let s = settings(&[
            ("AETHERFLOW_STEP_FUEL", "1_000_000"),
            ("AETHERFLOW_STEP_MAX_OUTPUT_BYTES", "1 MiB"),
            ("AETHERFLOW_STEP_MAX_LOG_BYTES", "2048"),
            ("AETHERFLOW_MAX_COMPONENT_BYTES", "10MB"),
        ])
        .unwrap();
        assert_eq!(s.step_fuel, Some(1_000_000));
        assert_eq!(s.step_max_output_bytes, 1 << 20);
        assert_eq!(s.step_max_log_bytes, 2048);
        assert_eq!(s.max_component_bytes, 10_000_000);
        assert_eq!(
            settings(&[("AETHERFLOW_STEP_FUEL", "none")])
                .unwrap()
                .step_fuel,
            None
        );
    }

    #[test]
    fn invalid_limit_settings_name_the_variable() {
        for (var, value) in [
            ("AETHERFLOW_STEP_FUEL", "0"),
            ("AETHERFLOW_STEP_FUEL", "lots"),
            ("AETHERFLOW_STEP_MAX_OUTPUT_BYTES", "0"),
            ("AETHERFLOW_STEP_MAX_LOG_BYTES", "ten"),
            ("AETHERFLOW_MAX_COMPONENT_BYTES", "1 PB"),
        ] {
            let e = settings(&[(var, value)]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {var}=`{value}`: ")), "{e}");
        }
    }
}
