//! The `db` connector for PostgreSQL (drivers `postgres` / `postgresql`), on the sync
//! `postgres` client.
//!
//! A query is prepared, bound to a portal inside a transaction and then pulled from the
//! portal [`CHUNK_ROWS`] rows at a time on a worker thread (see [`super::sql`]), so a result
//! of any size never sits in memory. Rows arrive in Postgres' binary format and are decoded
//! here into typed cells (exact digits for `numeric`, ISO 8601 for dates and timestamps).
//!
//! Parameters: a JSON list binds `$1`, `$2`, ...; a JSON object binds `:name` placeholders
//! (rewritten to `$n`, as SQLAlchemy's `text()` does for the reference's postgres resources).
//! Values are sent as text and the server converts them to the parameter's type.
//!
//! TLS follows libpq: `sslmode` (`disable`, `prefer` (default), `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` (a PEM file, or `system` for the bundled public roots;
//! `~/.postgresql/root.crt` when it exists and none is given), from `options`, `config` or
//! the query of `config.url`, in that order. See [`TlsSettings`].

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::config::SslMode as WireSslMode;
use postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};
use postgres::{Client, Config};
use rustls::client::WebPkiServerVerifier;
use rustls::ClientConfig;
use serde_json::Value;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::{self, Head, HeadSender, RowSink, SqlCursor, CHUNK_ROWS};
use super::{tls, ResolvedResource};
use crate::sandbox::bindings::aetherflow::step::sql::{Cell, Column, SqlError, SqlErrorKind};

/// Seconds to wait for a connection when `options.connect_timeout` is not set.
const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

const QMARK_HINT: &str =
    " (postgres numbers its positional parameters $1, $2, ...; `?` is not a placeholder)";

/// One Postgres resource: how to connect, and its idle connections.
pub struct Postgres {
    /// `db resource 'name' (postgres user@host:port/db)`, the prefix of every error.
    label: String,
    pool: sql::Pool<Client>,
    /// The TLS connector (also for cancel requests, which open their own connection).
    tls: MakeRustlsConnect,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (unless
    /// a root certificate is given: then its chain is).
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root certificate is
    /// given: then its chain is, as `verify-ca`).
    Require,
    /// TLS, and the certificate must chain to the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// None given and no `~/.postgresql/root.crt`.
    None,
    /// `sslrootcert=system`: the bundled public (Mozilla) roots.
    System,
    /// A PEM file: given, or libpq's default `~/.postgresql/root.crt`.
    File(String),
}

/// A resource's TLS settings (libpq's `sslmode` and `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub rootcert: RootCert,
}

/// Where the TLS settings may be given, for the hints in error messages.
const WHERE_SSL: &str =
    "options.sslmode / options.sslrootcert, or ?sslmode=...&sslrootcert=... in config.url";

/// The libpq TLS parameters taken out of a connection string (the client library knows
/// only some of them, and `verify-ca`/`verify-full` not at all).
const SSL_KEYS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"];

/// Split the `SSL_KEYS` parameters off a URL's query: the URL without them, and them
/// (percent-decoded).
fn take_url_params(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Vec::new());
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k);
        if SSL_KEYS.contains(&key.as_str()) {
            taken.push((key, decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// Split the `SSL_KEYS` parameters off a `key=value ...` connection string (values may be
/// single-quoted, with `\` escapes), as [`take_url_params`].
fn take_kv_params(dsn: &str) -> (String, Vec<(String, String)>) {
    let chars: Vec<char> = dsn.chars().collect();
    let mut i = 0;
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            // Not `key=value`: leave the rest to the client library's parser (and its error).
            kept.push(chars[start..].iter().collect::<String>());
            break;
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        if SSL_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(chars[start..i.min(chars.len())].iter().collect());
        }
    }
    (kept.join(" "), taken)
}

/// libpq's default root certificate file.
fn default_root_cert() -> Option<String> {
    let p = dirs::home_dir()?.join(".postgresql/root.crt");
    p.is_file().then(|| p.display().to_string())
}

/// The TLS settings: `options.X`, else `config.X`, else the connection string's `X`;
/// `sslmode` defaults to `prefer`, as libpq.
fn tls_settings(
    r: &ResolvedResource,
    from_url: &[(String, String)],
) -> Result<TlsSettings, String> {
    let get = |key: &str| -> Option<String> {
        tls::setting(r, key).and_then(str_of).or_else(|| {
            from_url
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    };
    for key in ["sslcert", "sslkey", "sslpassword"] {
        if get(key).is_some_and(|v| !v.trim().is_empty()) {
            return Err(format!(
                "{key}: client certificates are not supported by the postgres connector; \
                 remove {key} and authenticate with a password"
            ));
        }
    }
    let mode = match get("sslmode").filter(|v| !v.trim().is_empty()) {
        None => SslMode::Prefer,
        Some(m) => SslMode::parse(&m).ok_or_else(|| {
            let allow = if m.trim() == "allow" {
                " (`allow` is not supported: use `prefer`, TLS when the server offers it)"
            } else {
                ""
            };
            format!("sslmode must be {}, got {m:?}{allow}", SslMode::NAMES)
        })?,
    };
    let rootcert = match get("sslrootcert").filter(|v| !v.trim().is_empty()) {
        Some(v) if v.trim() == "system" => RootCert::System,
        Some(v) => RootCert::File(v.trim().to_string()),
        None => default_root_cert().map_or(RootCert::None, RootCert::File),
    };
    if mode.verifies() && rootcert == RootCert::None {
        return Err(format!(
            "sslmode={} checks the server's certificate, so it needs the certificate of the CA \
             that signed it: set sslrootcert to that CA's PEM file ({WHERE_SSL}), or \
             sslrootcert=system to trust the public CAs; or use sslmode=require to encrypt \
             without checking the certificate",
            mode.name()
        ));
    }
    Ok(TlsSettings { mode, rootcert })
}

/// The rustls connector for `settings` (never used with `sslmode=disable`).
fn tls_connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    let provider = tls::provider();
    let roots = match &settings.rootcert {
        RootCert::None => None,
        RootCert::System => Some(tls::public_roots()),
        RootCert::File(path) => Some(tls::root_store(
            &tls::read_ca_file(path).map_err(|m| format!("sslrootcert: {m}"))?,
        )),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut config = match (settings.mode, roots) {
        (_, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
        (SslMode::VerifyFull, Some(roots)) => {
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (_, Some(roots)) => {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(tls::ChainOnly(verifier)))
                .with_no_client_auth()
        }
    };
    // PostgreSQL 17's direct TLS (`sslnegotiation=direct`) wants this ALPN name.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

fn conn_error(message: String) -> SqlError {
    SqlError {
        kind: SqlErrorKind::Connection,
        message,
    }
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The client configuration from `config.url` and/or `host`, `port`, `user`, `password`,
/// `dbname` (fields override the URL) and `options.connect_timeout` (seconds), and the TLS
/// settings (see [`tls_settings`]).
pub fn config_from(r: &ResolvedResource) -> Result<(Config, TlsSettings), String> {
    let c = &r.config;
    let get = |keys: &[&str]| keys.iter().find_map(|k| c.get(*k).and_then(str_of));
    let mut from_url = Vec::new();
    let mut config = match get(&["url", "dsn"]) {
        Some(url) if !url.trim().is_empty() => {
            // SQLAlchemy-style `postgresql+psycopg2://` URLs (the reference's) are accepted.
            let url = url.trim();
            let url = match url.split_once("://") {
                Some((scheme, rest)) if scheme.starts_with("postgres") && scheme.contains('+') => {
                    format!("postgresql://{rest}")
                }
                _ => url.to_string(),
            };
            let (rest, ssl) = if url.contains("://") {
                take_url_params(&url)
            } else {
                take_kv_params(&url)
            };
            from_url = ssl;
            rest.parse::<Config>()
                .map_err(|e| format!("config.url is not a valid postgres URL: {e}"))?
        }
        _ => Config::new(),
    };
    if let Some(h) = get(&["host"]) {
        config.host(&h);
    }
    if let Some(p) = get(&["port"]) {
        let port: u16 = p
            .trim()
            .parse()
            .map_err(|_| format!("config.port must be a port number, got {p:?}"))?;
        config.port(port);
    }
    if let Some(u) = get(&["user", "username"]) {
        config.user(&u);
    }
    if let Some(p) = get(&["password"]) {
        config.password(p);
    }
    if let Some(d) = get(&["dbname", "database"]) {
        config.dbname(&d);
    }
    if config.get_hosts().is_empty() {
        return Err("the postgres connector requires config.url or config.host".into());
    }
    if config.get_user().is_none() {
        return Err("the postgres connector requires a user (config.user or in config.url)".into());
    }
    let timeout = match r
        .options
        .get("connect_timeout")
        .or(c.get("connect_timeout"))
    {
        None | Some(Value::Null) => DEFAULT_CONNECT_TIMEOUT as f64,
        Some(v) => str_of(v)
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0 && t.is_finite())
            .ok_or_else(|| {
                format!("options.connect_timeout must be a number of seconds, got {v}")
            })?,
    };
    config.connect_timeout(Duration::from_secs_f64(timeout));
    if config.get_application_name().is_none() {
        config.application_name("aetherflow");
    }
    let settings = tls_settings(r, &from_url)?;
    config.ssl_mode(match settings.mode {
        SslMode::Disable => WireSslMode::Disable,
        SslMode::Prefer => WireSslMode::Prefer,
        _ => WireSslMode::Require,
    });
    Ok((config, settings))
}

fn label(r: &ResolvedResource, config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "db resource '{}' (postgres {}@{host}:{port}/{})",
        r.name,
        config.get_user().unwrap_or(""),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
    )
}

/// The text of a client error: the server's own message (with detail, hint and SQLSTATE)
/// for database errors, else the client's message and its causes.
fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" DETAIL: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" HINT: {h}"));
        }
        s.push_str(&format!(" (SQLSTATE {})", db.code().code()));
        return s;
    }
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// Why a connection failed, with the fix when it is about TLS.
fn connect_error_text(e: &postgres::Error, settings: &TlsSettings) -> String {
    let mode = settings.mode.name();
    if let Some(problem) = tls::certificate_problem(e) {
        let name_problem = problem.contains("not valid for");
        let fix = match (&settings.rootcert, name_problem) {
            (_, true) => format!(
                "connect with the host name the certificate names, or use sslmode=verify-ca to \
                 check only that a trusted CA signed it ({WHERE_SSL})"
            ),
            (RootCert::File(path), false) => format!(
                "check that sslrootcert (`{path}`) holds the certificate of the CA that signed \
                 the server's certificate, or use sslmode=require to encrypt without checking \
                 the certificate ({WHERE_SSL})"
            ),
            (_, false) => format!(
                "set sslrootcert to the PEM file of the CA that signed the server's \
                 certificate, or use sslmode=require to encrypt without checking the \
                 certificate ({WHERE_SSL})"
            ),
        };
        return format!("TLS certificate check failed (sslmode={mode}): {problem}; {fix}");
    }
    let text = error_text(e);
    if text.contains("server does not support TLS") {
        return format!(
            "{text}: sslmode={mode} needs TLS but the server does not offer it (ssl = off); \
             turn ssl on in the server, or use sslmode=prefer or sslmode=disable ({WHERE_SSL})"
        );
    }
    text
}

impl Postgres {
    pub fn new(r: &ResolvedResource, keep: bool) -> Result<Postgres, SqlError> {
        let bad = |m: String| conn_error(format!("db resource '{}': {m}", r.name));
        let (config, settings) = config_from(r).map_err(bad)?;
        let tls = tls_connector(&settings).map_err(bad)?;
        let label = label(r, &config);
        let open_label = label.clone();
        let open_tls = tls.clone();
        let pool = sql::Pool::new(keep, move || {
            config.connect(open_tls.clone()).map_err(|e| {
                conn_error(format!(
                    "{open_label}: cannot connect: {}",
                    connect_error_text(&e, &settings)
                ))
            })
        });
        Ok(Postgres { label, pool, tls })
    }

    fn take(&self) -> Result<Client, SqlError> {
        self.pool.take_if(|c| !c.is_closed())
    }

    fn query_error(&self, e: &postgres::Error) -> SqlError {
        SqlError {
            kind: if e.as_db_error().is_some() || !e.is_closed() {
                SqlErrorKind::Query
            } else {
                SqlErrorKind::Connection
            },
            message: format!("{}: {}", self.label, error_text(e)),
        }
    }

    /// A failed prepare; a syntax error in a statement that uses `?` gets a hint.
    fn prepare_error(&self, e: &postgres::Error, original: &str) -> SqlError {
        let mut err = self.query_error(e);
        let syntax = e.as_db_error().is_some_and(|d| d.code().code() == "42601");
        if syntax && original.contains('?') {
            err.message.push_str(QMARK_HINT);
        }
        err
    }

    fn bad(&self, m: impl std::fmt::Display) -> SqlError {
        SqlError {
            kind: SqlErrorKind::Query,
            message: format!("{}: {m}", self.label),
        }
    }

    /// Rewrite `:name` placeholders and order the values for the prepared statement.
    fn prepare_params(
        &self,
        statement: &str,
        params: &str,
    ) -> Result<(String, Vec<TextParam>), SqlError> {
        let v: Value = if params.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(params)
                .map_err(|e| self.bad(format!("params are not valid JSON: {e}")))?
        };
        match v {
            Value::Null => Ok((statement.to_string(), Vec::new())),
            Value::Array(a) => Ok((statement.to_string(), a.iter().map(TextParam::of).collect())),
            Value::Object(m) => {
                let (sql, names) = rewrite_named(statement);
                let mut values = Vec::with_capacity(names.len());
                for n in &names {
                    let v = m.get(n).ok_or_else(|| {
                        self.bad(format!(
                            "the statement uses :{n} but params has no key {n:?} (keys: {})",
                            m.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    values.push(TextParam::of(v));
                }
                Ok((sql, values))
            }
            other => Err(self.bad(format!(
                "params must be null, a list ($1, $2, ...) or an object (:name), got {other}"
            ))),
        }
    }

    fn check_param_count(
        &self,
        statement: &str,
        stmt: &postgres::Statement,
        values: &[TextParam],
    ) -> Result<(), SqlError> {
        if stmt.params().len() != values.len() {
            let hint = if statement.contains('?') {
                QMARK_HINT
            } else {
                ""
            };
            return Err(self.bad(format!(
                "the statement has {} parameter(s) but {} value(s) were given{hint}",
                stmt.params().len(),
                values.len()
            )));
        }
        Ok(())
    }

    /// Run a statement; a watchdog cancels it on the server at `deadline`.
    pub fn execute(
        &self,
        statement: &str,
        params: &str,
        deadline: Option<Instant>,
    ) -> Result<u64, SqlError> {
        let (sql, values) = self.prepare_params(statement, params)?;
        let mut client = self.take()?;
        let watchdog = deadline.map(|d| Watchdog::arm(d, client.cancel_token(), self.tls.clone()));
        let result = (|| {
            let stmt = client
                .prepare(&sql)
                .map_err(|e| self.prepare_error(&e, statement))?;
            self.check_param_count(statement, &stmt, &values)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            client
                .execute(&stmt, &refs)
                .map_err(|e| self.query_error(&e))
        })();
        // A connection a cancel request may have reached is not reused.
        let cancelled = watchdog.is_some_and(Watchdog::disarm);
        if !cancelled && !client.is_closed() {
            self.pool.give(client);
        }
        result
    }

    pub fn query(
        self: Arc<Self>,
        statement: &str,
        params: &str,
        deadline: Option<Instant>,
    ) -> Result<SqlCursor, SqlError> {
        let (sql, values) = self.prepare_params(statement, params)?;
        let statement = statement.to_string();
        SqlCursor::spawn("postgres", deadline, move |head, sink| {
            let mut client = match self.take() {
                Ok(c) => c,
                Err(e) => {
                    head.send(Err(e));
                    return;
                }
            };
            let state = Arc::new(Mutex::new(WorkerState::default()));
            let q = Query {
                original: &statement,
                sql: &sql,
                values: &values,
            };
            self.stream(&mut client, &q, &state, head, sink);
            let cancelled = {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.done = true;
                st.cancelled
            };
            // A connection a cancel request may still reach is never reused.
            if !cancelled && !client.is_closed() {
                self.pool.give(client);
            }
        })
    }

    /// The worker's part of a query: prepare, bind a portal, send the columns, then pull
    /// the portal in chunks until the result ends, an error occurs or the cursor is dropped.
    fn stream(
        &self,
        client: &mut Client,
        q: &Query<'_>,
        state: &Arc<Mutex<WorkerState>>,
        head: HeadSender,
        mut sink: RowSink,
    ) {
        let stmt = match client.prepare(q.sql) {
            Ok(s) => s,
            Err(e) => {
                head.send(Err(self.prepare_error(&e, q.original)));
                return;
            }
        };
        if let Err(e) = self.check_param_count(q.original, &stmt, q.values) {
            head.send(Err(e));
            return;
        }
        let mut decoders = Vec::with_capacity(stmt.columns().len());
        let mut columns = Vec::with_capacity(stmt.columns().len());
        for c in stmt.columns() {
            match Decoder::for_type(c.type_()) {
                Some(d) => decoders.push(d),
                None => {
                    head.send(Err(self.bad(format!(
                        "column '{}' has type {}, which the postgres connector cannot convert; \
                         cast it in the query (e.g. {}::text)",
                        c.name(),
                        c.type_().name(),
                        c.name()
                    ))));
                    return;
                }
            }
            columns.push(Column {
                name: c.name().to_string(),
                decl_type: Some(c.type_().name().to_string()),
            });
        }
        let cancel_token = client.cancel_token();
        let mut tx = match client.transaction() {
            Ok(t) => t,
            Err(e) => {
                head.send(Err(self.query_error(&e)));
                return;
            }
        };
        let refs: Vec<&(dyn ToSql + Sync)> =
            q.values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let portal = match tx.bind(&stmt, &refs) {
            Ok(p) => p,
            Err(e) => {
                head.send(Err(self.query_error(&e)));
                return;
            }
        };
        // A cursor dropped while the worker still streams cancels the running statement
        // (the worker then closes the connection instead of pooling it).
        let state = state.clone();
        let tls = self.tls.clone();
        let cancel: sql::Cancel = Box::new(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if !st.done {
                st.cancelled = true;
                std::thread::spawn(move || {
                    let _ = cancel_token.cancel_query(tls);
                });
            }
        });
        if !head.send(Ok(Head {
            columns,
            cancel: Some(cancel),
        })) {
            return;
        }
        loop {
            let rows = match tx.query_portal(&portal, CHUNK_ROWS as i32) {
                Ok(r) => r,
                Err(e) => return sink.fail(self.query_error(&e)),
            };
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let mut cells = Vec::with_capacity(decoders.len());
                for (i, d) in decoders.iter().enumerate() {
                    let raw = match row.try_get::<_, Raw>(i) {
                        Ok(r) => r.0,
                        Err(e) => return sink.fail(self.query_error(&e)),
                    };
                    match raw.map(|b| d.decode(b)).transpose() {
                        Ok(c) => cells.push(c.unwrap_or(Cell::Null)),
                        Err(m) => {
                            let col = &stmt.columns()[i];
                            return sink.fail(self.bad(format!(
                                "column '{}' ({}): {m}",
                                col.name(),
                                col.type_().name()
                            )));
                        }
                    }
                }
                if !sink.push(cells) {
                    return; // the cursor was dropped: the transaction rolls back
                }
            }
        }
        match tx.commit() {
            Ok(()) => sink.finish(),
            Err(e) => sink.fail(self.query_error(&e)),
        }
    }
}

/// A statement ready to prepare: as the step wrote it, as sent, and its values.
struct Query<'a> {
    original: &'a str,
    sql: &'a str,
    values: &'a [TextParam],
}

/// Whether a query's worker has finished, and whether its cursor cancelled it.
#[derive(Default)]
struct WorkerState {
    done: bool,
    cancelled: bool,
}

/// A parameter sent in text format: the server parses it as the parameter's type.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn of(v: &Value) -> TextParam {
        TextParam(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            // Lists and objects go as JSON text (for json/jsonb parameters).
            other => Some(other.to_string()),
        })
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    postgres::types::to_sql_checked!();
}

/// A column value as the raw bytes of its binary format (decoded by [`Decoder`]).
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// How one column's binary values become cells.
#[derive(Debug, Clone, Copy)]
enum Decoder {
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Bool,
    Text,
    Char,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    TimeTz,
    Uuid,
    Jsonb,
}

impl Decoder {
    fn for_type(ty: &Type) -> Option<Decoder> {
        if let Kind::Domain(base) = ty.kind() {
            return Decoder::for_type(base);
        }
        if let Kind::Enum(_) = ty.kind() {
            return Some(Decoder::Text);
        }
        Some(match *ty {
            Type::INT2 => Decoder::Int2,
            Type::INT4 => Decoder::Int4,
            Type::INT8 => Decoder::Int8,
            Type::OID => Decoder::Oid,
            Type::FLOAT4 => Decoder::Float4,
            Type::FLOAT8 => Decoder::Float8,
            Type::NUMERIC => Decoder::Numeric,
            Type::BOOL => Decoder::Bool,
            Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::JSON
            | Type::XML => Decoder::Text,
            Type::CHAR => Decoder::Char,
            Type::BYTEA => Decoder::Bytea,
            Type::DATE => Decoder::Date,
            Type::TIMESTAMP => Decoder::Timestamp,
            Type::TIMESTAMPTZ => Decoder::TimestampTz,
            Type::TIME => Decoder::Time,
            Type::TIMETZ => Decoder::TimeTz,
            Type::UUID => Decoder::Uuid,
            Type::JSONB => Decoder::Jsonb,
            // Extension types whose binary format is their text.
            _ if ty.name() == "citext" => Decoder::Text,
            _ => return None,
        })
    }

    fn decode(self, b: &[u8]) -> Result<Cell, String> {
        let fixed = |n: usize| -> Result<&[u8], String> {
            if b.len() == n {
                Ok(b)
            } else {
                Err(format!("expected {n} bytes, got {}", b.len()))
            }
        };
        Ok(match self {
            Decoder::Int2 => {
                Cell::Integer(i16::from_be_bytes(fixed(2)?.try_into().unwrap()) as i64)
            }
            Decoder::Int4 => {
                Cell::Integer(i32::from_be_bytes(fixed(4)?.try_into().unwrap()) as i64)
            }
            Decoder::Int8 => Cell::Integer(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
            Decoder::Oid => Cell::Integer(u32::from_be_bytes(fixed(4)?.try_into().unwrap()) as i64),
            Decoder::Float4 => {
                // Shortest digits of the float4, as the server prints it (1.1, not 1.100000023841858).
                let f = f32::from_be_bytes(fixed(4)?.try_into().unwrap());
                Cell::Real(f.to_string().parse::<f64>().unwrap_or(f as f64))
            }
            Decoder::Float8 => Cell::Real(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
            Decoder::Numeric => Cell::Decimal(numeric_text(b)?),
            Decoder::Bool => Cell::Boolean(fixed(1)?[0] != 0),
            Decoder::Text => Cell::Text(utf8(b)?),
            Decoder::Char => Cell::Text(utf8(b)?),
            Decoder::Bytea => Cell::Blob(b.to_vec()),
            Decoder::Date => {
                let days = i32::from_be_bytes(fixed(4)?.try_into().unwrap());
                Cell::Date(match days {
                    i32::MAX => "infinity".into(),
                    i32::MIN => "-infinity".into(),
                    d => date_text(d as i64),
                })
            }
            Decoder::Timestamp | Decoder::TimestampTz => {
                let us = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
                Cell::Datetime(match us {
                    i64::MAX => "infinity".into(),
                    i64::MIN => "-infinity".into(),
                    us => {
                        let mut s = timestamp_text(us);
                        if matches!(self, Decoder::TimestampTz) {
                            s.push_str("+00:00");
                        }
                        s
                    }
                })
            }
            Decoder::Time => {
                Cell::Text(time_text(i64::from_be_bytes(fixed(8)?.try_into().unwrap())))
            }
            Decoder::TimeTz => {
                let b = fixed(12)?;
                let us = i64::from_be_bytes(b[..8].try_into().unwrap());
                // The zone is seconds *west* of UTC.
                let offset = -(i32::from_be_bytes(b[8..].try_into().unwrap()) as i64);
                let (sign, off) = if offset < 0 {
                    ('-', -offset)
                } else {
                    ('+', offset)
                };
                let mut s = time_text(us);
                s.push_str(&format!("{sign}{:02}:{:02}", off / 3600, off / 60 % 60));
                if off % 60 != 0 {
                    s.push_str(&format!(":{:02}", off % 60));
                }
                Cell::Text(s)
            }
            Decoder::Uuid => {
                let h: String = fixed(16)?.iter().map(|x| format!("{x:02x}")).collect();
                Cell::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            }
            Decoder::Jsonb => match b.split_first() {
                Some((1, rest)) => Cell::Text(utf8(rest)?),
                _ => return Err("unknown jsonb format version".into()),
            },
        })
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| format!("not valid UTF-8: {e}"))
}

/// `numeric` in binary (base-10000 digits) to its exact decimal text, as the server prints it.
fn numeric_text(b: &[u8]) -> Result<String, String> {
    if b.len() < 8 {
        return Err("numeric value too short".into());
    }
    let rd = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let ndigits = rd(0).max(0) as usize;
    let weight = rd(2) as i64;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = rd(6).max(0) as i64;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    if b.len() < 8 + 2 * ndigits {
        return Err("numeric value truncated".into());
    }
    let digit = |i: i64| -> i64 {
        if i >= 0 && (i as usize) < ndigits {
            rd(8 + 2 * i as usize) as i64
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                s.push_str(&digit(i).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut frac = String::new();
        let mut i = weight + 1;
        while (frac.len() as i64) < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale as usize);
        s.push_str(&frac);
    }
    Ok(s)
}

/// Days since 2000-01-01 to `YYYY-MM-DD` (proleptic Gregorian; `... BC` before year 1).
fn date_text(days_since_2000: i64) -> String {
    let (y, m, d) = civil_from_days(days_since_2000 + 10_957);
    if y >= 1 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    }
}

/// Microseconds since 2000-01-01 00:00:00 to `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
fn timestamp_text(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) * 1_000_000 + frac;
    let date = date_text(days);
    match date.strip_suffix(" BC") {
        Some(d) => format!("{d}T{} BC", time_text(tod)),
        None => format!("{date}T{}", time_text(tod)),
    }
}

/// Microseconds since midnight to `HH:MM:SS[.ffffff]` (Python's `time.isoformat()`).
fn time_text(us: i64) -> String {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        s.push_str(&format!(".{frac:06}"));
    }
    s
}

/// Howard Hinnant's days-from-civil inverse: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

/// Rewrite `:name` placeholders to `$1`, `$2`, ... (one number per distinct name, in order
/// of first use). String literals, quoted identifiers, dollar-quoted strings, comments and
/// `::type` casts are left alone; `\:` is a literal colon.
fn rewrite_named(sql: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_alphabetic() || c == '_';
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                // Quoted literal or identifier; a doubled quote stays inside.
                let q = c;
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == q {
                        if i + 1 < chars.len() && chars[i + 1] == q {
                            out.push(q);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    if chars[i] == '\\' && q == '\'' && i + 1 < chars.len() {
                        // E'...' escapes; harmless for standard strings.
                        out.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                out.push_str("/*");
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    out.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    out.push_str("*/");
                    i += 2;
                }
            }
            '$' => {
                // A dollar quote `$tag$ ... $tag$` (not a `$1` parameter).
                let mut j = i + 1;
                while j < chars.len() && ident(chars[j]) && !chars[i + 1].is_ascii_digit() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '$' && !chars[i + 1].is_ascii_digit() {
                    let tag: String = chars[i..=j].iter().collect();
                    out.push_str(&tag);
                    i = j + 1;
                    let rest: String = chars[i..].iter().collect();
                    match rest.find(&tag) {
                        Some(end) => {
                            out.push_str(&rest[..end + tag.len()]);
                            i += rest[..end + tag.len()].chars().count();
                        }
                        None => {
                            out.push_str(&rest);
                            i = chars.len();
                        }
                    }
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            '\\' if chars.get(i + 1) == Some(&':') => {
                out.push(':');
                i += 2;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if chars.get(i + 1).is_some_and(|c| ident_start(*c)) => {
                let mut j = i + 1;
                while j < chars.len() && ident(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                let n = match names.iter().position(|x| *x == name) {
                    Some(p) => p + 1,
                    None => {
                        names.push(name);
                        names.len()
                    }
                };
                out.push_str(&format!("${n}"));
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, names)
}

/// Cancels the statement running on a connection if it is still running at a deadline.
struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn arm(deadline: Instant, token: postgres::CancelToken, tls: MakeRustlsConnect) -> Watchdog {
        let (done, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = token.cancel_query(tls);
                    true
                }
                _ => false,
            }
        });
        Watchdog { done, thread }
    }

    /// Stop watching; true if the statement was cancelled.
    fn disarm(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(config: Value, options: Value) -> ResolvedResource {
        ResolvedResource {
            name: "pg".into(),
            kind: "db".into(),
            driver: "postgres".into(),
            config: config.as_object().unwrap().clone(),
            options: options.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn ssl_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, taken) = take_url_params(
            "postgres://u:p@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.pem",
        );
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_string(), "verify-full".to_string()),
                ("sslrootcert".to_string(), "/tmp/ca x.pem".to_string())
            ]
        );
        let (rest, taken) = take_url_params("postgres://u@h/db?sslmode=require");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(taken.len(), 1);
        let (rest, taken) = take_kv_params(
            "host=h user=u sslmode = verify-ca sslrootcert='/tmp/my ca.pem' dbname=d",
        );
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_string(), "verify-ca".to_string()),
                ("sslrootcert".to_string(), "/tmp/my ca.pem".to_string())
            ]
        );
    }

    #[test]
    fn tls_settings_follow_libpq() {
        use serde_json::json;
        // Default: prefer; options win over config, config over the URL.
        let url = "postgres://u@h/db?sslmode=require&sslrootcert=/u.pem";
        let (config, s) = config_from(&resource(json!({"url": url}), json!({}))).unwrap();
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.rootcert, RootCert::File("/u.pem".into()));
        assert_eq!(config.get_ssl_mode(), WireSslMode::Require);
        let (_, s) = config_from(&resource(
            json!({"url": url, "sslmode": "disable"}),
            json!({"sslmode": "verify-full", "sslrootcert": "system"}),
        ))
        .unwrap();
        assert_eq!(
            (s.mode, s.rootcert),
            (SslMode::VerifyFull, RootCert::System)
        );
        let (config, s) = config_from(&resource(
            json!({"host": "h", "user": "u", "sslmode": "disable"}),
            json!({}),
        ))
        .unwrap();
        assert_eq!(s.mode, SslMode::Disable);
        assert_eq!(config.get_ssl_mode(), WireSslMode::Disable);
        if default_root_cert().is_none() {
            let (config, s) =
                config_from(&resource(json!({"host": "h", "user": "u"}), json!({}))).unwrap();
            assert_eq!((s.mode, s.rootcert), (SslMode::Prefer, RootCert::None));
            assert_eq!(config.get_ssl_mode(), WireSslMode::Prefer);
            let e = config_from(&resource(
                json!({"host": "h", "user": "u"}),
                json!({"sslmode": "verify-ca"}),
            ))
            .unwrap_err();
            assert!(
                e.starts_with("sslmode=verify-ca checks the server's certificate"),
                "{e}"
            );
        }
        let e = config_from(&resource(
            json!({"url": "postgres://u@h/db?sslmode=allow"}),
            json!({}),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "sslmode must be disable, prefer, require, verify-ca or verify-full, got \"allow\" \
             (`allow` is not supported: use `prefer`, TLS when the server offers it)"
        );
        let e = config_from(&resource(
            json!({"url": "postgres://u@h/db?sslcert=/c.pem&sslkey=/k.pem"}),
            json!({}),
        ))
        .unwrap_err();
        assert!(e.contains("client certificates are not supported"), "{e}");
    }

    #[test]
    fn named_params_are_rewritten_outside_literals_and_casts() {
        let (sql, names) = rewrite_named(
            "select :a, ':b', \":c\", x::int, :a, :d_1 -- :e\n/* :f */ $$ :g $$ \\:h",
        );
        assert_eq!(
            sql,
            "select $1, ':b', \":c\", x::int, $1, $2 -- :e\n/* :f */ $$ :g $$ :h"
        );
        assert_eq!(names, vec!["a", "d_1"]);
    }

    #[test]
    fn numeric_binary_to_text() {
        // 12345.678 = digits [1, 2345, 6780], weight 1, dscale 3
        let mut b = vec![];
        for x in [3i16, 1, 0, 3, 1, 2345, 6780] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "12345.678");
        // 0.0001 = digits [1], weight -1, dscale 4
        let mut b = vec![];
        for x in [1i16, -1, 0x4000u16 as i16, 4, 1] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "-0.0001");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(date_text(31 + 28), "2000-02-29");
        assert_eq!(timestamp_text(1_500_000), "2000-01-01T00:00:01.500000");
        assert_eq!(timestamp_text(-1), "1999-12-31T23:59:59.999999");
        assert_eq!(time_text(3_723_000_000), "01:02:03");
    }
}
