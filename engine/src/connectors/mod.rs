//! Host connectors. A step never holds a connection or a secret: it calls a WIT import
//! naming a resource, and the host runs the operation here with the resource's resolved
//! configuration.

pub mod sqlite;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::sandbox::bindings::aetherflow::step::sql::{SqlError, SqlErrorKind};
use sqlite::SqlCursor;

/// A resource after profile overlay and env rendering: what a connector is built from.
#[derive(Debug, Clone)]
pub struct ResolvedResource {
    pub name: String,
    pub kind: String,
    pub driver: String,
    pub config: Map<String, Value>,
    pub options: Map<String, Value>,
}

/// Connector caching (`AETHERFLOW_CONNECTOR_CACHE_*`, a resource's `options.cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Connections are reused within the run and closed at its end (default).
    #[default]
    Run,
    /// As `run`: one `aetherflow run` is one process.
    Process,
    /// Every operation opens and closes its own connection.
    None,
}

impl CachePolicy {
    /// `run|process|none` (trimmed, any case); anything else means `run`, as the reference.
    pub fn parse(s: &str) -> CachePolicy {
        match s.trim().to_ascii_lowercase().as_str() {
            "process" => CachePolicy::Process,
            "none" => CachePolicy::None,
            _ => CachePolicy::Run,
        }
    }
}

/// The resources of one run, and the connections they keep.
#[derive(Default)]
pub struct Connectors {
    resources: BTreeMap<String, ResolvedResource>,
    default_policy: CachePolicy,
    disabled: bool,
    pools: std::sync::Mutex<BTreeMap<String, std::sync::Arc<sqlite::Pool>>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("resources", &self.resources.keys().collect::<Vec<_>>())
            .field("default_policy", &self.default_policy)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

const SQL_DRIVERS: &[&str] = &["db:sqlite", "db:sqlite3"];

impl Connectors {
    pub fn new(resources: impl IntoIterator<Item = ResolvedResource>) -> Self {
        Self::with_policy(resources, CachePolicy::Run, false)
    }

    /// `default_policy` from `AETHERFLOW_CONNECTOR_CACHE_DEFAULT`; `disabled`
    /// (`AETHERFLOW_CONNECTOR_CACHE_DISABLED`) forces `none` over a resource's `options.cache`.
    pub fn with_policy(
        resources: impl IntoIterator<Item = ResolvedResource>,
        default_policy: CachePolicy,
        disabled: bool,
    ) -> Self {
        Connectors {
            resources: resources.into_iter().map(|r| (r.name.clone(), r)).collect(),
            default_policy,
            disabled,
            pools: Default::default(),
        }
    }

    /// The resolution order of the reference: disabled, then the resource's
    /// `options.cache`, then the default.
    pub fn policy(&self, name: &str) -> CachePolicy {
        if self.disabled {
            return CachePolicy::None;
        }
        match self
            .resources
            .get(name)
            .and_then(|r| r.options.get("cache"))
            .and_then(Value::as_str)
        {
            Some(p) => CachePolicy::parse(p),
            None => self.default_policy,
        }
    }

    fn pool(&self, name: &str) -> Result<std::sync::Arc<sqlite::Pool>, SqlError> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(name) {
            return Ok(p.clone());
        }
        let path = self.sqlite_path(name)?;
        let pool = std::sync::Arc::new(sqlite::Pool::new(
            path,
            self.policy(name) != CachePolicy::None,
        ));
        pools.insert(name.to_string(), pool.clone());
        Ok(pool)
    }

    pub fn kind(&self, name: &str) -> Option<&str> {
        self.resources.get(name).map(|r| r.kind.as_str())
    }

    pub fn names(&self) -> Vec<&str> {
        self.resources.keys().map(String::as_str).collect()
    }

    fn sqlite_path(&self, name: &str) -> Result<std::path::PathBuf, SqlError> {
        let r = self.resources.get(name).ok_or_else(|| SqlError {
            kind: SqlErrorKind::UnknownResource,
            message: format!("Unknown resource: {name}"),
        })?;
        match r.driver.as_str() {
            "sqlite" | "sqlite3" => {
                sqlite::path_from_config(&r.config).map_err(|message| SqlError {
                    kind: SqlErrorKind::Connection,
                    message,
                })
            }
            other => Err(SqlError {
                kind: SqlErrorKind::Connection,
                message: format!(
                    "Unknown connector: {}:{other}. Loaded: [{}]",
                    r.kind,
                    SQL_DRIVERS
                        .iter()
                        .map(|d| format!("'{d}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    pub fn sql_query(
        &self,
        name: &str,
        statement: &str,
        params: &str,
    ) -> Result<SqlCursor, SqlError> {
        let pool = self.pool(name)?;
        let params = sqlite::parse_params(params)?;
        SqlCursor::open(pool, statement.to_string(), params)
    }

    pub fn sql_execute(&self, name: &str, statement: &str, params: &str) -> Result<u64, SqlError> {
        let pool = self.pool(name)?;
        let params = sqlite::parse_params(params)?;
        sqlite::execute(&pool, statement, &params)
    }
}
