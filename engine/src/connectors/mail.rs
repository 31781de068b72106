//! The `mail` connector (driver `smtp`): the host side of the WIT `mail` interface.

use std::path::PathBuf;

use super::Connectors;
use crate::sandbox::bindings::aetherflow::step::mail::{MailError, MailErrorKind, Message};

/// Drivers of kind `mail` this build implements.
pub const DRIVERS: &[&str] = &[];

impl Connectors {
    /// Send one message through resource `name` (grant and kind already checked);
    /// `attachments` are the message's attachment paths, already confined to the workspace.
    pub fn mail_send(
        &self,
        name: &str,
        _msg: Message,
        _attachments: Vec<PathBuf>,
    ) -> Result<(), MailError> {
        let r = self.resource(name).ok_or_else(|| MailError {
            kind: MailErrorKind::UnknownResource,
            message: format!("Unknown resource: {name}"),
        })?;
        Err(MailError {
            kind: MailErrorKind::Connection,
            message: Connectors::unknown_driver(r, DRIVERS),
        })
    }
}
