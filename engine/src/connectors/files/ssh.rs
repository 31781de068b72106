//! The `sftp` connector (drivers `ssh` and `paramiko`): SFTP over libssh2.
//!
//! Config: `host`, `port` (22), `user` (or `username`), `password` and/or a private key
//! (`pkey_path` or `private_key_path`, optional `passphrase`), `known_hosts`
//! (`~/.ssh/known_hosts`). Options: `timeout` (seconds, 30) bounds the TCP connect and
//! every blocking SSH call; `host_key_check` (true) checks the server's key against the
//! known_hosts file, `false` accepts any key (insecure).
//!
//! Writes go to a temporary name in the target directory and are renamed into place, on
//! the remote side (write-bytes, upload) and on the local side (download), so no partial
//! file is ever left under the final name. The password never appears in a message.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use ssh2::{
    CheckResult, ErrorCode, HashType, HostKeyType, KnownHostFileKind, MethodType, OpenFlags,
    OpenType, Session, Sftp,
};

use super::{FileOp, FileOut};
use crate::connectors::tls::expand_home;
use crate::connectors::ResolvedResource;
use crate::sandbox::bindings::aetherflow::step::files::{
    FilesError, FilesErrorKind, RemoteFileMeta,
};

/// Copy buffer for uploads and downloads.
const CHUNK: usize = 256 * 1024;
/// SFTP status codes (draft-ietf-secsh-filexfer-02).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_FAILURE: i32 = 4;
const FX_NO_SUCH_PATH: i32 = 10;

/// The connection settings of one `sftp` resource.
struct Config {
    resource: String,
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    pkey: Option<PathBuf>,
    passphrase: Option<String>,
    timeout: Duration,
    host_key_check: bool,
    known_hosts: PathBuf,
    /// `config.root`: the remote directory the resource is confined to, normalized and
    /// absolute. `None`: whatever the account can reach.
    root: Option<String>,
}

/// A remote path with `.`, `..` and repeated slashes resolved lexically (`..` at `/` stays
/// at `/`); the result is absolute when `path` is.
fn normalize_remote(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

fn text(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match map.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

impl Config {
    /// The path an operation uses for the step's remote `path`: with `config.root`,
    /// relative paths are taken from the root and nothing may resolve outside it (checked
    /// lexically, before anything is sent); without a root, `path` as given.
    fn confine(&self, path: &str) -> Result<String, FilesError> {
        let Some(root) = &self.root else {
            return Ok(path.to_string());
        };
        let full = if path.starts_with('/') {
            normalize_remote(path)
        } else {
            normalize_remote(&format!("{root}/{path}"))
        };
        let inside = root == "/"
            || full == *root
            || full
                .strip_prefix(root.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if inside {
            Ok(full)
        } else {
            Err(FilesError {
                kind: FilesErrorKind::PermissionDenied,
                message: format!(
                    "sftp resource `{}`: remote path `{path}` is outside its root `{root}` \
                     (config.root); use a path under it, or a relative one",
                    self.resource
                ),
            })
        }
    }

    fn from_resource(r: &ResolvedResource) -> Result<Config, FilesError> {
        let bad = |what: String| FilesError {
            kind: FilesErrorKind::Connection,
            message: format!("sftp resource `{}`: {what}", r.name),
        };
        let host =
            text(&r.config, &["host"]).ok_or_else(|| bad("config.host is required".into()))?;
        let port = match text(&r.config, &["port"]) {
            None => 22,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .map_err(|_| bad(format!("config.port must be a port number, got `{p}`")))?,
        };
        let user = text(&r.config, &["user", "username"])
            .ok_or_else(|| bad("config.user (or config.username) is required".into()))?;
        let timeout = match text(&r.options, &["timeout"]) {
            None => 30.0,
            Some(t) => match t.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => s,
                _ => {
                    return Err(bad(format!(
                        "options.timeout must be a positive number of seconds, got `{t}`"
                    )))
                }
            },
        };
        let host_key_check = match r.options.get("host_key_check") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => true,
                "false" | "no" | "0" | "off" => false,
                _ => {
                    return Err(bad(format!(
                        "options.host_key_check must be true or false, got `{s}`"
                    )))
                }
            },
            Some(other) => {
                return Err(bad(format!(
                    "options.host_key_check must be true or false, got {other}"
                )))
            }
        };
        let known_hosts = match text(&r.config, &["known_hosts"]) {
            Some(p) => expand_home(&p),
            None => dirs::home_dir()
                .unwrap_or_default()
                .join(".ssh/known_hosts"),
        };
        Ok(Config {
            resource: r.name.clone(),
            host,
            port,
            user,
            password: text(&r.config, &["password"]),
            pkey: text(&r.config, &["pkey_path", "private_key_path"]).map(|p| expand_home(&p)),
            passphrase: text(
                &r.config,
                &["passphrase", "pkey_passphrase", "private_key_passphrase"],
            ),
            timeout: Duration::from_secs_f64(timeout),
            host_key_check,
            known_hosts,
            root: match text(&r.config, &["root"]) {
                None => None,
                Some(root) if root.starts_with('/') => Some(normalize_remote(&root)),
                Some(root) => {
                    return Err(bad(format!(
                        "config.root must be an absolute remote path (e.g. /srv/drop), got `{root}`"
                    )))
                }
            },
        })
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A connection-level error naming the resource, with the password masked.
    fn conn_err(&self, what: String) -> FilesError {
        FilesError {
            kind: FilesErrorKind::Connection,
            message: self.scrub(format!("sftp resource `{}`: {what}", self.resource)),
        }
    }

    fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(p) if p.len() >= 3 => message.replace(p.as_str(), "***"),
            _ => message,
        }
    }
}

/// An open SSH session with its SFTP channel.
struct Live {
    sess: Session,
    sftp: Option<Sftp>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Close the SFTP channel while the session is still up, then say goodbye.
        drop(self.sftp.take());
        let _ = self.sess.disconnect(None, "closing", None);
    }
}

/// The connector state of one resource: its settings and the session, opened again when a
/// previous one broke.
pub struct SftpConn {
    cfg: Config,
    live: Mutex<Option<Live>>,
}

impl SftpConn {
    /// Parse the resource; the session is opened by the first operation (within that
    /// operation's deadline).
    pub fn open(r: &ResolvedResource) -> Result<SftpConn, FilesError> {
        let cfg = Config::from_resource(r)?;
        Ok(SftpConn {
            cfg,
            live: Mutex::new(None),
        })
    }

    /// Run one operation. Every blocking SSH call in it waits no longer than `options.timeout`
    /// and no later than `deadline` (the calling step's).
    pub fn run(&self, op: FileOp<'_>, deadline: Option<Instant>) -> Result<FileOut, FilesError> {
        if crate::connectors::past(deadline) {
            return Err(self.cfg.conn_err("stopped at the step's deadline".into()));
        }
        let wait = crate::connectors::within(self.cfg.timeout, deadline);
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(connect(&self.cfg, wait)?);
        }
        let live = guard.as_ref().expect("connected");
        live.sess.set_timeout(millis(wait));
        let ops = Ops {
            cfg: &self.cfg,
            sftp: live.sftp.as_ref().expect("sftp channel"),
        };
        let out = ops.run(op);
        live.sess.set_timeout(millis(self.cfg.timeout));
        if matches!(&out, Err(e) if matches!(e.kind, FilesErrorKind::Connection | FilesErrorKind::Io))
        {
            // The session may be broken (timeout, lost connection, a transfer cut off): open
            // a new one for the next operation.
            *guard = None;
        }
        out
    }
}

/// A libssh2 timeout (milliseconds; 0 would mean none, so at least 1).
fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// Open a session; `timeout` bounds the TCP connect and every step of the handshake.
fn connect(cfg: &Config, timeout: Duration) -> Result<Live, FilesError> {
    let target = cfg.target();
    let secs = timeout.as_secs_f64();
    let addrs: Vec<_> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| cfg.conn_err(format!("cannot resolve host `{}`: {e}", cfg.host)))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        cfg.conn_err(format!(
            "cannot connect to {target} (timeout {secs}s): {}",
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into())
        ))
    })?;
    let mut sess =
        Session::new().map_err(|e| cfg.conn_err(format!("cannot create an SSH session: {e}")))?;
    sess.set_timeout(millis(timeout));
    sess.set_tcp_stream(tcp);
    if cfg.host_key_check {
        prefer_known_key_types(cfg, &sess);
    }
    sess.handshake()
        .map_err(|e| cfg.conn_err(format!("SSH handshake with {target} failed: {e}")))?;
    if cfg.host_key_check {
        check_host_key(cfg, &sess)?;
    }
    authenticate(cfg, &sess)?;
    let sftp = sess.sftp().map_err(|e| {
        cfg.conn_err(format!(
            "cannot start the SFTP subsystem on {target}: {e} (does the server allow SFTP?)"
        ))
    })?;
    Ok(Live {
        sess,
        sftp: Some(sftp),
    })
}

/// The host-key lines of the known_hosts file, without markers (`@cert-authority`,
/// `@revoked`), which libssh2 does not understand.
fn known_host_lines(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@'))
        .map(str::to_string)
        .collect())
}

/// Ask the server for a host-key type the known_hosts file has for it (plain entries
/// only), so that a server offering several keys presents one we can check.
fn prefer_known_key_types(cfg: &Config, sess: &Session) {
    let Ok(lines) = known_host_lines(&cfg.known_hosts) else {
        return;
    };
    let names = [cfg.host.clone(), format!("[{}]:{}", cfg.host, cfg.port)];
    let mut types: Vec<&str> = Vec::new();
    for line in &lines {
        let mut f = line.split_whitespace();
        let (Some(hosts), Some(kt)) = (f.next(), f.next()) else {
            continue;
        };
        let hit = hosts.split(',').any(|h| {
            if cfg.port == 22 {
                h == names[0] || h == format!("[{}]:22", cfg.host)
            } else {
                h == names[1]
            }
        });
        if !hit {
            continue;
        }
        let algs: &[&str] = match kt {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            "ssh-ed25519" => &["ssh-ed25519"],
            "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
            "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
            "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
            _ => &[],
        };
        for a in algs {
            if !types.contains(a) {
                types.push(a);
            }
        }
    }
    if !types.is_empty() {
        let _ = sess.method_pref(MethodType::HostKey, &types.join(","));
    }
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// Standard base64 without padding, as OpenSSH prints fingerprints.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn check_host_key(cfg: &Config, sess: &Session) -> Result<(), FilesError> {
    let target = cfg.target();
    let path = cfg.known_hosts.display();
    let (key, ktype) = sess
        .host_key()
        .ok_or_else(|| cfg.conn_err(format!("{target} presented no host key")))?;
    let key = key.to_vec();
    let fp = format!(
        "{} SHA256:{}",
        key_type_name(ktype),
        sess.host_key_hash(HashType::Sha256)
            .map(base64)
            .unwrap_or_default()
    );
    let add_hint = format!(
        "after verifying it, add it with `ssh-keyscan -p {} {} >> {path}` (or point config.known_hosts \
         at the right file), or set options.host_key_check: false (insecure: accepts any server)",
        cfg.port, cfg.host
    );
    let lines = known_host_lines(&cfg.known_hosts).map_err(|e| {
        cfg.conn_err(format!(
            "cannot check the host key of {target} ({fp}): known_hosts file `{path}`: {e}; {add_hint}"
        ))
    })?;
    let mut kh = sess
        .known_hosts()
        .map_err(|e| cfg.conn_err(format!("cannot check host keys: {e}")))?;
    for line in &lines {
        // A line libssh2 cannot parse (an unsupported key type) is skipped.
        let _ = kh.read_str(line, KnownHostFileKind::OpenSSH);
    }
    match kh.check_port(&cfg.host, cfg.port, &key) {
        CheckResult::Match => Ok(()),
        CheckResult::NotFound => Err(cfg.conn_err(format!(
            "the host key of {target} ({fp}) is unknown: it is not in `{path}`; {add_hint}"
        ))),
        CheckResult::Mismatch => Err(cfg.conn_err(format!(
            "HOST KEY MISMATCH for {target}: the server's key ({fp}) differs from the one recorded \
             in `{path}`. Someone may be intercepting the connection; if the server's key really \
             changed, replace its line in that file"
        ))),
        CheckResult::Failure => Err(cfg.conn_err(format!(
            "cannot check the host key of {target} against `{path}`"
        ))),
    }
}

fn authenticate(cfg: &Config, sess: &Session) -> Result<(), FilesError> {
    let target = cfg.target();
    let mut tried = Vec::new();
    if let Some(key) = &cfg.pkey {
        if !key.is_file() {
            return Err(cfg.conn_err(format!(
                "private key file `{}` (config.pkey_path) does not exist",
                key.display()
            )));
        }
        match sess.userauth_pubkey_file(&cfg.user, None, key, cfg.passphrase.as_deref()) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(format!("private key `{}`: refused", key.display())),
            Err(e) => {
                let hint = if e.message().contains("Unable to extract public key") {
                    " (also the error for a wrong or missing config.passphrase)"
                } else {
                    ""
                };
                tried.push(format!("private key `{}`: {e}{hint}", key.display()))
            }
        }
    }
    if let Some(password) = &cfg.password {
        match sess.userauth_password(&cfg.user, password) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push("password: refused".to_string()),
            Err(e) => tried.push(format!("password: {e}")),
        }
    }
    if tried.is_empty() {
        return Err(
            cfg.conn_err("no credentials: set config.password or config.pkey_path".to_string())
        );
    }
    Err(cfg.conn_err(format!(
        "SSH authentication of user `{}` at {target} failed ({}); check config.user and the \
         password or private key",
        cfg.user,
        tried.join("; ")
    )))
}

/// A random suffix for temporary file names.
fn tmp_suffix() -> String {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&n.to_le_bytes()[..6]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `dir/.name.af-part-xxxx` beside a remote path.
fn remote_tmp(path: &str) -> String {
    let (dir, name) = split_remote(path);
    let tmp = format!(".{name}.af-part-{}", tmp_suffix());
    match dir {
        Some("") => format!("/{tmp}"),
        Some(d) => format!("{d}/{tmp}"),
        None => tmp,
    }
}

/// (parent, name) of a remote path; the parent is `Some("")` for `/name`, `None` for a bare
/// name.
fn split_remote(path: &str) -> (Option<&str>, &str) {
    let p = path.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, p),
    }
}

/// The operations on an open SFTP channel.
struct Ops<'a> {
    cfg: &'a Config,
    sftp: &'a Sftp,
}

impl Ops<'_> {
    fn run(&self, op: FileOp<'_>) -> Result<FileOut, FilesError> {
        let remote = |p: &str| self.cfg.confine(p);
        match op {
            FileOp::List { dir } => self.list(&remote(dir)?).map(FileOut::Listing),
            FileOp::ReadBytes { path } => self.read_bytes(&remote(path)?).map(FileOut::Bytes),
            FileOp::WriteBytes { path, data } => self
                .write_via_tmp(&remote(path)?, &mut &data[..])
                .map(|_| FileOut::Done),
            FileOp::Upload { local, remote: to } => {
                let to = remote(to)?;
                let mut f = fs::File::open(local).map_err(|e| {
                    self.io_err(format!("cannot read local file `{}`: {e}", local.display()))
                })?;
                self.write_via_tmp(&to, &mut f).map(|_| FileOut::Done)
            }
            FileOp::Download {
                remote: from,
                local,
            } => self.download(&remote(from)?, local).map(|_| FileOut::Done),
            FileOp::Delete { path, recursive } => self
                .delete(&remote(path)?, recursive)
                .map(|_| FileOut::Done),
            FileOp::Mkdir { path, parents } => {
                let path = remote(path)?;
                if parents {
                    self.mkdir_p(&path)
                } else {
                    self.sftp
                        .mkdir(Path::new(&path), 0o755)
                        .map_err(|e| self.err("mkdir", &path, e))
                }
                .map(|_| FileOut::Done)
            }
        }
    }

    /// An SFTP error of `what` on `path`, classified.
    fn err(&self, what: &str, path: &str, e: ssh2::Error) -> FilesError {
        let kind = match e.code() {
            ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => FilesErrorKind::NotFound,
            ErrorCode::SFTP(FX_PERMISSION_DENIED) => FilesErrorKind::PermissionDenied,
            ErrorCode::SFTP(_) => FilesErrorKind::Io,
            ErrorCode::Session(_) => FilesErrorKind::Connection,
        };
        FilesError {
            kind,
            message: self.cfg.scrub(format!(
                "sftp resource `{}`: {what} `{path}` failed: {e}",
                self.cfg.resource
            )),
        }
    }

    /// A failure while reading or writing an open remote file (ssh2 keeps only the message).
    fn stream_err(&self, what: &str, path: &str, e: std::io::Error) -> FilesError {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => FilesErrorKind::NotFound,
            std::io::ErrorKind::TimedOut => FilesErrorKind::Connection,
            _ => FilesErrorKind::Io,
        };
        FilesError {
            kind,
            message: self.cfg.scrub(format!(
                "sftp resource `{}`: {what} `{path}` failed: {e}",
                self.cfg.resource
            )),
        }
    }

    fn io_err(&self, what: String) -> FilesError {
        FilesError {
            kind: FilesErrorKind::Io,
            message: format!("sftp resource `{}`: {what}", self.cfg.resource),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<RemoteFileMeta>, FilesError> {
        let listed = if dir.is_empty() { "." } else { dir };
        let entries = self
            .sftp
            .readdir(Path::new(listed))
            .map_err(|e| self.err("list", listed, e))?;
        let base = if dir.is_empty() {
            None
        } else {
            Some(dir.trim_end_matches('/'))
        };
        let mut out: Vec<RemoteFileMeta> = entries
            .into_iter()
            .map(|(p, st)| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let is_dir = st.is_dir();
                RemoteFileMeta {
                    rel_path: None,
                    path: match base {
                        Some(b) => format!("{b}/{name}"),
                        None => name.clone(),
                    },
                    name,
                    is_dir,
                    size: if is_dir { None } else { st.size },
                    mtime: st.mtime.map(|m| m as i64),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read_bytes(&self, path: &str) -> Result<Vec<u8>, FilesError> {
        let mut f = self
            .sftp
            .open(Path::new(path))
            .map_err(|e| self.err("read", path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| self.stream_err("read", path, e))?;
        Ok(buf)
    }

    /// `mkdir -p`.
    fn mkdir_p(&self, path: &str) -> Result<(), FilesError> {
        let mut cur = String::new();
        if path.starts_with('/') {
            cur.push('/');
        }
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if !cur.is_empty() && !cur.ends_with('/') {
                cur.push('/');
            }
            cur.push_str(comp);
            match self.sftp.stat(Path::new(&cur)) {
                Ok(st) if st.is_dir() => continue,
                Ok(_) => {
                    return Err(self.io_err(format!(
                        "cannot create directory `{path}`: `{cur}` exists and is not a directory"
                    )))
                }
                Err(_) => {
                    if let Err(e) = self.sftp.mkdir(Path::new(&cur), 0o755) {
                        // Someone else may have created it meanwhile.
                        match self.sftp.stat(Path::new(&cur)) {
                            Ok(st) if st.is_dir() => {}
                            _ => return Err(self.err("mkdir", &cur, e)),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Write `src` to remote `path` through a temporary name in the same directory
    /// (created with its parents), then rename it into place.
    fn write_via_tmp(&self, path: &str, src: &mut dyn Read) -> Result<(), FilesError> {
        if let (Some(dir), _) = split_remote(path) {
            if !dir.is_empty() {
                self.mkdir_p(dir)?;
            }
        }
        let tmp = remote_tmp(path);
        let result = self
            .copy_to_remote(&tmp, src)
            .and_then(|_| self.rename_over(&tmp, path));
        if result.is_err() {
            let _ = self.sftp.unlink(Path::new(&tmp));
        }
        result
    }

    fn copy_to_remote(&self, tmp: &str, src: &mut dyn Read) -> Result<(), FilesError> {
        let mut f = self
            .sftp
            .open_mode(
                Path::new(tmp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| self.err("write", tmp, e))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| self.io_err(format!("cannot read the local data: {e}")))?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])
                .map_err(|e| self.stream_err("write", tmp, e))?;
        }
        f.close().map_err(|e| self.err("write", tmp, e))
    }

    /// Rename `tmp` to `dst`, replacing a file already there. SFTP v3 servers (OpenSSH)
    /// refuse to rename onto an existing file, so then the old file is removed first:
    /// the final name briefly does not exist, but never holds a partial file.
    fn rename_over(&self, tmp: &str, dst: &str) -> Result<(), FilesError> {
        match self.sftp.rename(Path::new(tmp), Path::new(dst), None) {
            Ok(()) => Ok(()),
            Err(e) => match self.sftp.lstat(Path::new(dst)) {
                Ok(st) if !st.is_dir() => {
                    self.sftp
                        .unlink(Path::new(dst))
                        .map_err(|e| self.err("replace", dst, e))?;
                    self.sftp
                        .rename(Path::new(tmp), Path::new(dst), None)
                        .map_err(|e| self.err("rename", dst, e))
                }
                _ => Err(self.err("rename", dst, e)),
            },
        }
    }

    fn download(&self, remote: &str, local: &Path) -> Result<(), FilesError> {
        let mut f = self
            .sftp
            .open(Path::new(remote))
            .map_err(|e| self.err("download", remote, e))?;
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".into());
        let tmp = local.with_file_name(format!(".{name}.af-part-{}", tmp_suffix()));
        let result = (|| {
            let mut out = fs::File::create(&tmp)
                .map_err(|e| self.io_err(format!("cannot write `{}`: {e}", tmp.display())))?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| self.stream_err("download", remote, e))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|e| self.io_err(format!("cannot write `{}`: {e}", tmp.display())))?;
            }
            out.sync_all()
                .map_err(|e| self.io_err(format!("cannot write `{}`: {e}", tmp.display())))?;
            fs::rename(&tmp, local).map_err(|e| {
                self.io_err(format!(
                    "cannot rename `{}` to `{}`: {e}",
                    tmp.display(),
                    local.display()
                ))
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn delete(&self, path: &str, recursive: bool) -> Result<(), FilesError> {
        let st = self
            .sftp
            .lstat(Path::new(path))
            .map_err(|e| self.err("delete", path, e))?;
        if !st.is_dir() {
            return self
                .sftp
                .unlink(Path::new(path))
                .map_err(|e| self.err("delete", path, e));
        }
        if recursive {
            return self.remove_tree(path);
        }
        self.rmdir(path)
    }

    fn rmdir(&self, path: &str) -> Result<(), FilesError> {
        self.sftp.rmdir(Path::new(path)).map_err(|e| {
            let hint = matches!(e.code(), ErrorCode::SFTP(FX_FAILURE));
            let mut err = self.err("delete directory", path, e);
            if hint {
                err.message
                    .push_str(" (is the directory empty? delete it with recursive: true)");
            }
            err
        })
    }

    fn remove_tree(&self, dir: &str) -> Result<(), FilesError> {
        let entries = self
            .sftp
            .readdir(Path::new(dir))
            .map_err(|e| self.err("list", dir, e))?;
        let base = dir.trim_end_matches('/');
        for (p, st) in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let child = format!("{base}/{name}");
            // Directory entries carry lstat attributes: a symlink is removed, not followed.
            if st.is_dir() {
                self.remove_tree(&child)?;
            } else {
                self.sftp
                    .unlink(Path::new(&child))
                    .map_err(|e| self.err("delete", &child, e))?;
            }
        }
        self.rmdir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_confined_to_the_root() {
        let mut cfg = Config {
            resource: "drop".into(),
            host: "h".into(),
            port: 22,
            user: "u".into(),
            password: None,
            pkey: None,
            passphrase: None,
            timeout: Duration::from_secs(1),
            host_key_check: true,
            known_hosts: PathBuf::new(),
            root: Some(normalize_remote("/srv//drop/")),
        };
        let ok = |c: &Config, p: &str| c.confine(p).unwrap();
        assert_eq!(ok(&cfg, "in/a.txt"), "/srv/drop/in/a.txt");
        assert_eq!(ok(&cfg, "./in/../b.txt"), "/srv/drop/b.txt");
        assert_eq!(ok(&cfg, "/srv/drop/x/y"), "/srv/drop/x/y");
        assert_eq!(ok(&cfg, "/srv/drop"), "/srv/drop");
        assert_eq!(ok(&cfg, ""), "/srv/drop");
        for bad in [
            "../x",
            "in/../../x",
            "/etc/passwd",
            "/srv/dropped/x",
            "/srv",
            "/",
        ] {
            let e = cfg.confine(bad).unwrap_err();
            assert!(matches!(e.kind, FilesErrorKind::PermissionDenied), "{bad}");
            assert!(
                e.message.contains(&format!(
                    "remote path `{bad}` is outside its root `/srv/drop`"
                )),
                "{}",
                e.message
            );
        }
        cfg.root = None;
        assert_eq!(ok(&cfg, "../x"), "../x");
    }

    #[test]
    fn base64_matches_openssh_fingerprints() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn remote_temp_names_stay_in_the_directory() {
        assert!(remote_tmp("a/b/c.txt").starts_with("a/b/.c.txt.af-part-"));
        assert!(remote_tmp("/c.txt").starts_with("/.c.txt.af-part-"));
        assert!(remote_tmp("c.txt").starts_with(".c.txt.af-part-"));
        assert_eq!(split_remote("/x/y/"), (Some("/x"), "y"));
    }

    fn resource(config: Value, options: Value) -> ResolvedResource {
        ResolvedResource {
            name: "files".into(),
            kind: "sftp".into(),
            driver: "ssh".into(),
            config: config.as_object().cloned().unwrap_or_default(),
            options: options.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn config_defaults_and_aliases() {
        let c = Config::from_resource(&resource(
            serde_json::json!({"host": "h", "username": "u", "private_key_path": "/k"}),
            serde_json::json!({}),
        ))
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!((c.port, c.user.as_str()), (22, "u"));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(c.host_key_check);
        assert_eq!(c.pkey, Some(PathBuf::from("/k")));
        assert!(c.known_hosts.ends_with(".ssh/known_hosts"));

        let c = Config::from_resource(&resource(
            serde_json::json!({"host": "h", "user": "u", "port": "2222"}),
            serde_json::json!({"timeout": 1.5, "host_key_check": "false"}),
        ))
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(c.port, 2222);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert!(!c.host_key_check);

        let e = Config::from_resource(&resource(
            serde_json::json!({"user": "u"}),
            serde_json::json!({}),
        ))
        .err()
        .expect("no host");
        assert!(
            e.message.contains("config.host is required"),
            "{}",
            e.message
        );
    }
}
