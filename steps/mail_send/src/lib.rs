//! `mail_send`: send one mail through a granted `mail` resource (SMTP), as the reference's
//! step of the same name, plus workspace file attachments.
//!
//! Inputs: `resource` (a `mail` resource), `to`, `subject`, `body`; optional `html`
//! (false: `body` is HTML and `text` its plain-text alternative), `text`, `cc`, `bcc`,
//! `from_addr`, `attachments` (workspace files, relative to the artifacts dir). A scalar
//! where a list is expected is a one-element list. Outputs `{sent, to, subject, html}`.

use aetherflow_sdk::mail::{self, Message};
use aetherflow_sdk::pyfmt::{py_str, truthy};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    to: Value,
    subject: Value,
    body: Value,
    #[serde(default)]
    html: Value,
    #[serde(default)]
    text: Value,
    #[serde(default)]
    cc: Value,
    #[serde(default)]
    bcc: Value,
    #[serde(default)]
    from_addr: Value,
    #[serde(default)]
    attachments: Value,
}

/// Python's `str(x)` for the scalars a template can produce.

/// The reference's `_as_list`: `null` → `[]`, a list as is, a scalar → `[scalar]`.
fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(py_str).collect(),
        other => vec![py_str(other)],
    }
}

fn optional(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(py_str(other)),
    }
}

struct MailSend;

impl Step for MailSend {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("mail_send", env!("CARGO_PKG_VERSION"))
            .description("Send an email (plain text or HTML, with attachments) through a mail resource.")
            .schema(json!({
                "type": "object",
                "required": ["resource", "to", "subject", "body"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of a `mail` resource (driver smtp)."},
                    "to": {"description": "An address or a list of addresses."},
                    "subject": {"type": "string"},
                    "body": {"type": "string", "description": "The plain-text body, or the HTML body when html is true."},
                    "html": {"type": "boolean", "default": false},
                    "text": {"type": "string", "description": "Plain-text alternative when html is true."},
                    "cc": {"description": "An address or a list of addresses."},
                    "bcc": {"description": "An address or a list; they receive the mail but are not in its headers."},
                    "from_addr": {"type": "string", "description": "Overrides the resource's from_addr."},
                    "attachments": {"description": "A workspace file or a list; relative paths are under the artifacts dir."}
                }
            }))
            .needs("mail", "resource")
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let to = as_list(&inputs.to);
        let subject = py_str(&inputs.subject);
        let body = py_str(&inputs.body);
        let html = truthy(&inputs.html);
        let mut attachments = Vec::new();
        for raw in as_list(&inputs.attachments) {
            let path = ctx.resolve_path(&raw)?;
            if !path.is_file() {
                return Err(Error::invalid_input(format!(
                    "mail_send step {}: attachment {raw} is not a file ({})",
                    ctx.step_id,
                    path.display()
                )));
            }
            attachments.push(path.to_string_lossy().into_owned());
        }
        let mut msg = Message::new(to.clone(), subject.clone())
            .cc(as_list(&inputs.cc))
            .bcc(as_list(&inputs.bcc));
        msg.from_addr = optional(&inputs.from_addr);
        msg.attachments = attachments;
        if html {
            msg.html = Some(body);
            msg.text = optional(&inputs.text);
        } else {
            msg.text = Some(body);
        }
        mail::send(&inputs.resource, &msg).map_err(|e| {
            let mut err: Error = e.into();
            err.message = format!(
                "mail_send step {} (resource {}): {}",
                ctx.step_id, inputs.resource, err.message
            );
            err
        })?;
        Outcome::success(json!({"sent": true, "to": to, "subject": subject, "html": html}))
    }
}

export_step!(MailSend);
