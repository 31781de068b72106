//! Host connectors. A step never holds a connection or a secret: it calls a WIT import
//! naming a resource, and the host runs the operation here with the resource's resolved
//! configuration.

pub mod files;
pub mod http;
pub mod mail;
pub mod postgres;
pub mod sql;
pub mod sqlite;
pub mod tls;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::sandbox::bindings::aetherflow::step::sql::{SqlError, SqlErrorKind};
pub use http::IncomingBody;
pub use sql::SqlCursor;

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
    /// Per-resource connector state of any kind (clients, sessions), see [`Connectors::cached`].
    cache: std::sync::Mutex<BTreeMap<String, Arc<dyn Any + Send + Sync>>>,
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

/// The `db` drivers, as the reference lists loaded connectors (sorted `kind:driver`).
const SQL_DRIVERS: &[&str] = &["db:postgres", "db:postgresql", "db:sqlite", "db:sqlite3"];

/// The connection pool of one `db` resource, per driver.
enum SqlBackend {
    Sqlite(Arc<sqlite::Pool>),
    Postgres(Arc<postgres::Postgres>),
}

/// What is left before a step's `deadline` (`None`: the call has no deadline).
pub fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// A wait of `d`, cut so that it ends just after `deadline`. The slack matters: a wait cut
/// to exactly what is left may end a moment early (libraries round timeouts down to whole
/// milliseconds), and the call's error would then reach the step as its own instead of
/// failing it as timed out (see `HostState::connector_result`).
pub fn within(d: Duration, deadline: Option<Instant>) -> Duration {
    time_left(deadline).map_or(d, |left| d.min(left + DEADLINE_SLACK))
}

/// How far past the deadline a cut wait may end.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// Whether `deadline` has passed.
pub fn past(deadline: Option<Instant>) -> bool {
    time_left(deadline).is_some_and(|left| left.is_zero())
}

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
            cache: Default::default(),
        }
    }

    /// The resolved resource of that name.
    pub fn resource(&self, name: &str) -> Option<&ResolvedResource> {
        self.resources.get(name)
    }

    /// The connector state `T` kept for resource `name` (a client, a session), made by
    /// `make` the first time and kept for the rest of the run, unless the resource's cache
    /// policy is `none` (then every call makes a new one). A connector module keeps one
    /// type per resource; asking for another type for the same name makes a new value.
    pub fn cached<T: Any + Send + Sync, E>(
        &self,
        name: &str,
        make: impl FnOnce(&ResolvedResource) -> Result<T, E>,
        unknown: impl FnOnce() -> E,
    ) -> Result<Arc<T>, E> {
        let resource = self.resources.get(name).ok_or_else(unknown)?;
        if self.policy(name) == CachePolicy::None {
            return make(resource).map(Arc::new);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.get(name).cloned() {
            if let Ok(v) = v.downcast::<T>() {
                return Ok(v);
            }
        }
        let v = Arc::new(make(resource)?);
        cache.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// "Unknown connector: kind:driver. Loaded: [...]", the reference's message for a
    /// driver nobody registered.
    pub fn unknown_driver(r: &ResolvedResource, loaded: &[&str]) -> String {
        format!(
            "Unknown connector: {}:{}. Loaded: [{}]",
            r.kind,
            r.driver,
            loaded
                .iter()
                .map(|d| format!("'{d}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
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

    pub fn kind(&self, name: &str) -> Option<&str> {
        self.resources.get(name).map(|r| r.kind.as_str())
    }

    pub fn names(&self) -> Vec<&str> {
        self.resources.keys().map(String::as_str).collect()
    }

    /// The driver state of `db` resource `name` (kept for the run unless its cache policy
    /// is `none`).
    fn sql_backend(&self, name: &str) -> Result<Arc<SqlBackend>, SqlError> {
        let keep = self.policy(name) != CachePolicy::None;
        self.cached(
            name,
            |r| match r.driver.as_str() {
                "sqlite" | "sqlite3" => sqlite::path_from_config(&r.config)
                    .map(|path| SqlBackend::Sqlite(Arc::new(sqlite::pool(path, keep))))
                    .map_err(|message| SqlError {
                        kind: SqlErrorKind::Connection,
                        message,
                    }),
                "postgres" | "postgresql" => {
                    postgres::Postgres::new(r, keep).map(|p| SqlBackend::Postgres(Arc::new(p)))
                }
                _ => Err(SqlError {
                    kind: SqlErrorKind::Connection,
                    message: Self::unknown_driver(r, SQL_DRIVERS),
                }),
            },
            || SqlError {
                kind: SqlErrorKind::UnknownResource,
                message: format!("Unknown resource: {name}"),
            },
        )
    }

    /// A query whose waits end at `deadline` (the calling step's).
    pub fn sql_query(
        &self,
        name: &str,
        statement: &str,
        params: &str,
        deadline: Option<Instant>,
    ) -> Result<SqlCursor, SqlError> {
        match &*self.sql_backend(name)? {
            SqlBackend::Sqlite(pool) => {
                let params = sqlite::parse_params(params)?;
                sqlite::query(pool.clone(), statement.to_string(), params, deadline)
            }
            SqlBackend::Postgres(pg) => pg.clone().query(statement, params, deadline),
        }
    }

    /// A statement stopped at `deadline` (the calling step's).
    pub fn sql_execute(
        &self,
        name: &str,
        statement: &str,
        params: &str,
        deadline: Option<Instant>,
    ) -> Result<u64, SqlError> {
        match &*self.sql_backend(name)? {
            SqlBackend::Sqlite(pool) => {
                let params = sqlite::parse_params(params)?;
                sqlite::execute(pool, statement, &params, deadline)
            }
            SqlBackend::Postgres(pg) => pg.execute(statement, params, deadline),
        }
    }
}
