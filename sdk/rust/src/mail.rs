//! Mail over a granted `mail` resource (SMTP). The host adds the server, the credentials
//! and the default sender; the step only builds the message.
//!
//! ```ignore
//! use aetherflow_sdk::mail::{self, Message};
//! let msg = Message::new(vec!["ops@example.org".into()], "Report ready")
//!     .text("See the attachment.")
//!     .attach("out/report.csv");
//! mail::send("mailer", &msg)?;
//! ```

use crate::bindings::aetherflow::step::mail as wit;
use crate::{Error, ErrorKind};

pub use wit::MailErrorKind;

/// One message. `bcc` recipients receive it but are not written into the headers.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    /// Overrides the resource's `from_addr`.
    pub from_addr: Option<String>,
    /// The plain-text body (with `html`, the text alternative).
    pub text: Option<String>,
    pub html: Option<String>,
    /// Workspace files to attach (absolute, or relative to the job workspace).
    pub attachments: Vec<String>,
}

impl Message {
    pub fn new(to: Vec<String>, subject: impl Into<String>) -> Self {
        Message {
            to,
            subject: subject.into(),
            ..Default::default()
        }
    }
    pub fn cc(mut self, cc: Vec<String>) -> Self {
        self.cc = cc;
        self
    }
    pub fn bcc(mut self, bcc: Vec<String>) -> Self {
        self.bcc = bcc;
        self
    }
    pub fn from_addr(mut self, from: impl Into<String>) -> Self {
        self.from_addr = Some(from.into());
        self
    }
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }
    pub fn attach(mut self, path: impl Into<String>) -> Self {
        self.attachments.push(path.into());
        self
    }
}

/// A refused or failed send: the host's error kind and message.
#[derive(Debug, Clone)]
pub struct MailError {
    pub kind: MailErrorKind,
    pub message: String,
}

impl MailError {
    /// The WIT name of the kind (`auth`, `rejected`, `connection`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            MailErrorKind::NotGranted => "not-granted",
            MailErrorKind::UnknownResource => "unknown-resource",
            MailErrorKind::WrongKind => "wrong-kind",
            MailErrorKind::InvalidMessage => "invalid-message",
            MailErrorKind::Connection => "connection",
            MailErrorKind::Auth => "auth",
            MailErrorKind::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mail error ({}): {}", self.kind_name(), self.message)
    }
}

impl std::error::Error for MailError {}

/// A step error: an invalid message is the step's inputs' fault, the rest is the connector's.
impl From<MailError> for Error {
    fn from(e: MailError) -> Error {
        let kind = match e.kind {
            MailErrorKind::InvalidMessage => ErrorKind::InvalidInput,
            _ => ErrorKind::Connector,
        };
        Error::new(kind, e.to_string())
    }
}

/// Send `msg` through the `mail` resource named `resource`.
pub fn send(resource: &str, msg: &Message) -> Result<(), MailError> {
    let m = wit::Message {
        to: msg.to.clone(),
        cc: msg.cc.clone(),
        bcc: msg.bcc.clone(),
        subject: msg.subject.clone(),
        from_addr: msg.from_addr.clone(),
        text: msg.text.clone(),
        html: msg.html.clone(),
        attachments: msg.attachments.clone(),
    };
    wit::send(resource, &m).map_err(|e| MailError {
        kind: e.kind,
        message: e.message,
    })
}
