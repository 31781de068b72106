//! The `mail` connector (driver `smtp`): the host side of the WIT `mail` interface.
//!
//! Configuration (the reference's `mail:smtp`):
//!
//! - `config.host` (required), `config.port` (587), `config.username`, `config.password`;
//! - `config.starttls` (default: true iff the port is 587), `config.tls` (implicit TLS from
//!   the first byte, e.g. port 465; default false);
//! - `config.from_addr` (default: `config.username`);
//! - `options.ca_bundle`: a PEM file with the CA certificate(s) to trust instead of the
//!   bundled public roots (a private CA); `options.verify_ssl: false` accepts any server
//!   certificate (insecure);
//! - `options.timeout` (seconds, 30) for the connection and every reply;
//! - `options.retry.max_attempts` (1), with a pause of min(2^i, 5) s between attempts.
//!
//! Every message opens its own SMTP session (connect, EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA,
//! QUIT). The password is handed only to the SMTP client and never appears in an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, SmtpConnection, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use serde_json::{Map, Value};

use super::{tls, Connectors, ResolvedResource};
use crate::sandbox::bindings::aetherflow::step::mail::{MailError, MailErrorKind, Message};

/// Drivers of kind `mail` this build implements.
pub const DRIVERS: &[&str] = &["mail:smtp"];

/// A resource's SMTP settings, parsed from its config and options.
#[derive(Clone)]
struct SmtpSettings {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    starttls: bool,
    tls: bool,
    from_addr: Option<String>,
    timeout: Duration,
    attempts: u32,
    /// `options.ca_bundle`: the path as given and its certificates (DER).
    ca_bundle: Option<(String, Vec<Vec<u8>>)>,
    /// `options.verify_ssl` (default true).
    verify: bool,
}

fn err(kind: MailErrorKind, message: impl Into<String>) -> MailError {
    MailError {
        kind,
        message: message.into(),
    }
}

fn text(config: &Map<String, Value>, key: &str) -> Option<String> {
    match config.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A number given as a JSON number or as text (env-rendered values are text).
fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Python truthiness of a config flag given as a bool, a number or text.
fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        ),
        Value::Null => false,
        _ => true,
    }
}

impl SmtpSettings {
    fn parse(r: &ResolvedResource) -> Result<SmtpSettings, MailError> {
        let bad = |m: String| err(MailErrorKind::Connection, m);
        let host = text(&r.config, "host")
            .ok_or_else(|| bad("mail.smtp requires config.host".to_string()))?;
        let port = match r.config.get("port") {
            None | Some(Value::Null) => 587,
            Some(v) => number(Some(v))
                .filter(|p| p.fract() == 0.0 && *p >= 1.0 && *p <= 65535.0)
                .map(|p| p as u16)
                .ok_or_else(|| {
                    bad(format!(
                        "mail resource `{}`: config.port must be a port number (1-65535), got {v}",
                        r.name
                    ))
                })?,
        };
        let tls = r.config.get("tls").is_some_and(flag);
        let starttls = match r.config.get("starttls") {
            Some(v) => flag(v),
            None => port == 587 && !tls,
        };
        if tls && starttls {
            return Err(bad(format!(
                "mail resource `{}`: config.tls (implicit TLS) and config.starttls exclude each \
                 other; set only one",
                r.name
            )));
        }
        let timeout = number(r.options.get("timeout"))
            .filter(|t| *t > 0.0)
            .unwrap_or(30.0);
        let attempts = number(
            r.options
                .get("retry")
                .and_then(Value::as_object)
                .and_then(|o| o.get("max_attempts")),
        )
        .map(|n| n.max(1.0) as u32)
        .unwrap_or(1)
        .min(100);
        let verify = match tls::setting(r, "verify_ssl") {
            None => true,
            Some(v) => tls::as_bool(v).ok_or_else(|| {
                bad(format!(
                    "mail resource `{}`: options.verify_ssl must be true or false, got {v}",
                    r.name
                ))
            })?,
        };
        let ca_bundle = match tls::setting(r, "ca_bundle") {
            Some(Value::String(p)) if !p.trim().is_empty() => {
                let certs = tls::read_ca_file(p).map_err(|m| {
                    bad(format!(
                        "mail resource `{}`: options.ca_bundle: {m}",
                        r.name
                    ))
                })?;
                Some((p.clone(), certs.iter().map(|c| c.to_vec()).collect()))
            }
            None | Some(Value::String(_)) => None,
            Some(v) => {
                return Err(bad(format!(
                    "mail resource `{}`: options.ca_bundle must be the path of a PEM file, got {v}",
                    r.name
                )))
            }
        };
        if ca_bundle.is_some() && !verify {
            return Err(bad(format!(
                "mail resource `{}`: options.ca_bundle and options.verify_ssl: false exclude each \
                 other: keep ca_bundle to verify the server with that CA, or remove it to skip \
                 verification (insecure)",
                r.name
            )));
        }
        if ca_bundle.is_some() && !tls && !starttls {
            return Err(bad(format!(
                "mail resource `{}`: options.ca_bundle is set but the connection is not \
                 encrypted: set config.starttls: true (or config.tls: true for implicit TLS, \
                 e.g. port 465)",
                r.name
            )));
        }
        let username = text(&r.config, "username");
        Ok(SmtpSettings {
            from_addr: text(&r.config, "from_addr").or_else(|| username.clone()),
            host,
            port,
            username,
            password: text(&r.config, "password"),
            starttls,
            tls,
            timeout: Duration::from_secs_f64(timeout),
            attempts,
            ca_bundle,
            verify,
        })
    }

    /// The TLS parameters of a session: the bundled public roots, or only the CA of
    /// `options.ca_bundle`; no verification with `options.verify_ssl: false`.
    fn tls_parameters(&self) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut b = TlsParameters::builder(self.host.clone());
        if let Some((_, certs)) = &self.ca_bundle {
            b = b.certificate_store(CertificateStore::None);
            for der in certs {
                b = b.add_root_certificate(Certificate::from_der(der.clone())?);
            }
        }
        if !self.verify {
            b = b
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        b.build_rustls()
    }

    /// Remove the password from a message that might quote it (a server echoing input).
    fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(p) if p.len() >= 3 && message.contains(p.as_str()) => message.replace(p, "***"),
            _ => message,
        }
    }
}

/// A message ready for the wire.
struct Prepared {
    envelope: Envelope,
    bytes: Vec<u8>,
}

fn mailbox(field: &str, raw: &str) -> Result<Mailbox, MailError> {
    raw.trim().parse::<Mailbox>().map_err(|e| {
        err(
            MailErrorKind::InvalidMessage,
            format!("invalid {field} address {raw:?}: {e}"),
        )
    })
}

/// The content type of an attachment, from its extension.
fn content_type(path: &Path) -> ContentType {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mime = match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    };
    ContentType::parse(mime).unwrap_or(ContentType::TEXT_PLAIN)
}

fn prepare(
    s: &SmtpSettings,
    resource: &str,
    msg: &Message,
    attachments: &[PathBuf],
) -> Result<Prepared, MailError> {
    let from_raw = msg
        .from_addr
        .clone()
        .filter(|f| !f.trim().is_empty())
        .or_else(|| s.from_addr.clone())
        .ok_or_else(|| {
            err(
                MailErrorKind::InvalidMessage,
                format!(
                    "no sender: set the step input from_addr, or config.from_addr (or \
                     config.username) of mail resource `{resource}`"
                ),
            )
        })?;
    let from = mailbox("from", &from_raw)?;
    let clean = |v: &[String]| -> Vec<String> {
        v.iter().filter(|a| !a.trim().is_empty()).cloned().collect()
    };
    let (to, cc, bcc) = (clean(&msg.to), clean(&msg.cc), clean(&msg.bcc));
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(err(
            MailErrorKind::InvalidMessage,
            "the message has no recipient (to, cc and bcc are empty)",
        ));
    }
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(msg.subject.clone());
    let mut rcpts = Vec::new();
    for a in &to {
        let m = mailbox("to", a)?;
        rcpts.push(m.email.clone());
        builder = builder.to(m);
    }
    for a in &cc {
        let m = mailbox("cc", a)?;
        rcpts.push(m.email.clone());
        builder = builder.cc(m);
    }
    // Bcc recipients go to the envelope only, never into a header.
    for a in &bcc {
        rcpts.push(mailbox("bcc", a)?.email);
    }
    let envelope = Envelope::new(Some(from.email.clone()), rcpts).map_err(|e| {
        err(
            MailErrorKind::InvalidMessage,
            format!("invalid envelope: {e}"),
        )
    })?;
    builder = builder.envelope(envelope.clone());

    let text = msg.text.clone().unwrap_or_default();
    let message = if attachments.is_empty() {
        match &msg.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
            None => builder.singlepart(SinglePart::plain(text)),
        }
    } else {
        let mut mixed = match &msg.html {
            Some(html) => {
                MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html.clone()))
            }
            None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
        };
        for (raw, path) in msg.attachments.iter().zip(attachments) {
            let data = std::fs::read(path).map_err(|e| {
                err(
                    MailErrorKind::InvalidMessage,
                    format!("cannot read attachment {raw}: {e}"),
                )
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            mixed = mixed.singlepart(Attachment::new(name).body(data, content_type(path)));
        }
        builder.multipart(mixed)
    }
    .map_err(|e| {
        err(
            MailErrorKind::InvalidMessage,
            format!("cannot build the message: {e}"),
        )
    })?;
    Ok(Prepared {
        envelope,
        bytes: message.formatted(),
    })
}

/// One failed attempt: its kind, its reference-style stage message and its cause.
struct Failure {
    kind: MailErrorKind,
    stage: &'static str,
    cause: String,
    /// Worth another attempt (network trouble, a 4xx reply).
    transient: bool,
    /// The server's certificate failed the check (this is the description).
    certificate: Option<String>,
}

/// A socket read/write timeout: `TimedOut`, or `WouldBlock` as Linux reports it.
fn timed_out(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            );
        }
        source = err.source();
    }
    false
}

fn failure(kind: MailErrorKind, stage: &'static str, e: lettre::transport::smtp::Error) -> Failure {
    let certificate = tls::certificate_problem(&e);
    // A certificate that fails the check fails it again.
    let transient = !e.is_permanent() && certificate.is_none();
    let cause = if let Some(problem) = &certificate {
        problem.clone()
    } else if timed_out(&e) {
        format!("timed out: no answer within the timeout ({e})")
    } else {
        e.to_string()
    };
    Failure {
        kind,
        stage,
        cause,
        transient,
        certificate,
    }
}

/// One connection and send; `timeout` bounds the connection and every reply.
fn attempt(s: &SmtpSettings, p: &Prepared, timeout: Duration) -> Result<(), Failure> {
    let hello = ClientId::default();
    let tls_params = |stage| {
        s.tls_parameters()
            .map_err(|e| failure(MailErrorKind::Connection, stage, e))
    };
    let wrapper = if s.tls {
        Some(tls_params("SMTP TLS failed")?)
    } else {
        None
    };
    let mut conn = SmtpConnection::connect(
        (s.host.as_str(), s.port),
        Some(timeout),
        &hello,
        wrapper.as_ref(),
        None,
    )
    .map_err(|e| {
        let stage = if s.tls && (e.is_tls() || tls::certificate_problem(&e).is_some()) {
            "SMTP TLS failed"
        } else {
            "SMTP connection failed"
        };
        failure(MailErrorKind::Connection, stage, e)
    })?;
    let result = (|| {
        if s.starttls {
            let params = tls_params("SMTP STARTTLS failed")?;
            conn.starttls(&params, &hello)
                .map_err(|e| failure(MailErrorKind::Connection, "SMTP STARTTLS failed", e))?;
        }
        if let (Some(user), Some(pwd)) = (&s.username, &s.password) {
            let creds = Credentials::new(user.clone(), pwd.clone());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .map_err(|e| failure(MailErrorKind::Auth, "SMTP login failed", e))?;
        }
        conn.send(&p.envelope, &p.bytes).map_err(|e| {
            let kind = if e.is_permanent() || e.is_transient() {
                MailErrorKind::Rejected
            } else {
                MailErrorKind::Connection
            };
            failure(kind, "SMTP send refused", e)
        })?;
        Ok(())
    })();
    if result.is_ok() {
        let _ = conn.quit();
    } else {
        conn.abort();
    }
    result
}

impl Connectors {
    /// Send one message through resource `name` (grant and kind already checked);
    /// `attachments` are the message's attachment paths, already confined to the workspace.
    /// No attempt or pause between attempts lasts past `deadline` (the calling step's).
    pub fn mail_send(
        &self,
        name: &str,
        msg: Message,
        attachments: Vec<PathBuf>,
        deadline: Option<Instant>,
    ) -> Result<(), MailError> {
        let settings = self.cached(
            name,
            |r| match r.driver.as_str() {
                "smtp" => SmtpSettings::parse(r),
                _ => Err(err(
                    MailErrorKind::Connection,
                    Connectors::unknown_driver(r, DRIVERS),
                )),
            },
            || {
                err(
                    MailErrorKind::UnknownResource,
                    format!("Unknown resource: {name}"),
                )
            },
        )?;
        let s = settings.as_ref();
        let prepared = prepare(s, name, &msg, &attachments)?;
        let mut made = 0;
        loop {
            if super::past(deadline) {
                return Err(err(
                    MailErrorKind::Connection,
                    format!(
                        "SMTP send to mail resource `{name}` was stopped at the step's deadline"
                    ),
                ));
            }
            made += 1;
            match attempt(s, &prepared, super::within(s.timeout, deadline)) {
                Ok(()) => return Ok(()),
                Err(f) => {
                    if made < s.attempts && f.transient {
                        let pause = Duration::from_secs(2u64.saturating_pow(made - 1).min(5));
                        std::thread::sleep(super::within(pause, deadline));
                        continue;
                    }
                    let hint = match (&f.certificate, &s.ca_bundle, f.kind) {
                        (Some(_), Some((path, _)), _) => format!(
                            ". Check that options.ca_bundle (`{path}`) holds the certificate of \
                             the CA that signed the server's certificate, or set \
                             options.verify_ssl: false to skip verification (insecure)"
                        ),
                        (Some(_), None, _) => ". If the server uses a private or self-signed \
                             CA, set options.ca_bundle to that CA's certificate (a PEM file), or \
                             set options.verify_ssl: false to skip verification (insecure)"
                            .to_string(),
                        (None, _, MailErrorKind::Auth) => {
                            ". Check config.username and config.password of the resource".into()
                        }
                        (None, _, MailErrorKind::Connection) => {
                            ". Check config.host, config.port and config.tls/config.starttls".into()
                        }
                        _ => String::new(),
                    };
                    let message = format!(
                        "SMTP send failed after {made} attempt(s): {} (mail resource `{name}`, \
                         {}:{}): {}{hint}",
                        f.stage, s.host, s.port, f.cause
                    );
                    return Err(err(f.kind, s.scrub(message)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(config: Value, options: Value) -> ResolvedResource {
        ResolvedResource {
            name: "m".into(),
            kind: "mail".into(),
            driver: "smtp".into(),
            config: config.as_object().unwrap().clone(),
            options: options.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn defaults_follow_the_reference() {
        let s = SmtpSettings::parse(&resource(json!({"host": "h", "username": "u"}), json!({})))
            .unwrap();
        assert_eq!(
            (s.port, s.starttls, s.tls, s.attempts),
            (587, true, false, 1)
        );
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.from_addr.as_deref(), Some("u"));
        let s = SmtpSettings::parse(&resource(
            json!({"host": "h", "port": "2525"}),
            json!({"timeout": 2, "retry": {"max_attempts": 3}}),
        ))
        .unwrap();
        assert_eq!((s.port, s.starttls, s.attempts), (2525, false, 3));
        let s = SmtpSettings::parse(&resource(
            json!({"host": "h", "port": 465, "tls": true}),
            json!({}),
        ))
        .unwrap();
        assert!(s.tls && !s.starttls);
    }

    #[test]
    fn tls_options_are_checked() {
        let s = SmtpSettings::parse(&resource(
            json!({"host": "h", "starttls": true}),
            json!({"verify_ssl": false}),
        ))
        .unwrap();
        assert!(!s.verify && s.ca_bundle.is_none());
        s.tls_parameters().unwrap();
        let e = SmtpSettings::parse(&resource(
            json!({"host": "h", "starttls": true}),
            json!({"verify_ssl": "maybe"}),
        ))
        .err()
        .unwrap();
        assert!(
            e.message
                .contains("options.verify_ssl must be true or false"),
            "{}",
            e.message
        );
        let e = SmtpSettings::parse(&resource(
            json!({"host": "h", "tls": true}),
            json!({"ca_bundle": "/nonexistent/ca.pem"}),
        ))
        .err()
        .unwrap();
        assert!(
            e.message.starts_with(
                "mail resource `m`: options.ca_bundle: cannot read the CA file `/nonexistent/ca.pem`"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn host_is_required() {
        let e = SmtpSettings::parse(&resource(json!({}), json!({})))
            .err()
            .unwrap();
        assert_eq!(e.message, "mail.smtp requires config.host");
    }

    #[test]
    fn bcc_is_not_a_header() {
        let s = SmtpSettings::parse(&resource(
            json!({"host": "h", "from_addr": "f@x.org"}),
            json!({}),
        ))
        .unwrap();
        let msg = Message {
            to: vec!["a@x.org".into()],
            cc: vec!["c@x.org".into()],
            bcc: vec!["hidden@x.org".into()],
            subject: "s".into(),
            from_addr: None,
            text: Some("hi".into()),
            html: None,
            attachments: vec![],
        };
        let p = prepare(&s, "m", &msg, &[]).unwrap();
        let raw = String::from_utf8(p.bytes).unwrap();
        assert!(!raw.contains("hidden@x.org"), "{raw}");
        assert!(raw.contains("Cc: c@x.org"), "{raw}");
        assert_eq!(p.envelope.to().len(), 3);
    }
}
