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

/// The resources of one run.
#[derive(Debug, Default)]
pub struct Connectors {
    resources: BTreeMap<String, ResolvedResource>,
}

const SQL_DRIVERS: &[&str] = &["db:sqlite", "db:sqlite3"];

impl Connectors {
    pub fn new(resources: impl IntoIterator<Item = ResolvedResource>) -> Self {
        Connectors {
            resources: resources.into_iter().map(|r| (r.name.clone(), r)).collect(),
        }
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
        let path = self.sqlite_path(name)?;
        let params = sqlite::parse_params(params)?;
        SqlCursor::open(path, statement.to_string(), params)
    }

    pub fn sql_execute(&self, name: &str, statement: &str, params: &str) -> Result<u64, SqlError> {
        let path = self.sqlite_path(name)?;
        let params = sqlite::parse_params(params)?;
        sqlite::execute(&path, statement, &params)
    }
}
