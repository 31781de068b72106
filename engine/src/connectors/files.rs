//! Remote-files connectors (kind `sftp`, drivers `ssh`/`paramiko`): the host side of the WIT
//! `files` interface.
//!
//! The SFTP client is libssh2 (the `ssh2` crate), in [`ssh`]. A resource keeps one SSH
//! session for the run ([`Connectors::cached`]); with cache policy `none` every operation
//! opens and closes its own.

mod ssh;

use std::path::Path;
use std::time::Instant;

use super::Connectors;
use crate::sandbox::bindings::aetherflow::step::files::{
    FilesError, FilesErrorKind, RemoteFileMeta,
};

/// Resource kinds the `files` interface serves.
pub const KINDS: &[&str] = &["sftp"];
/// Drivers this build implements.
pub const DRIVERS: &[&str] = &["sftp:ssh", "sftp:paramiko"];

/// One operation of the `files` interface; local paths are already confined to the
/// workspace by the caller.
pub enum FileOp<'a> {
    List { dir: &'a str },
    ReadBytes { path: &'a str },
    WriteBytes { path: &'a str, data: Vec<u8> },
    Upload { local: &'a Path, remote: &'a str },
    Download { remote: &'a str, local: &'a Path },
    Delete { path: &'a str, recursive: bool },
    Mkdir { path: &'a str, parents: bool },
}

/// What an operation returns.
pub enum FileOut {
    Done,
    Listing(Vec<RemoteFileMeta>),
    Bytes(Vec<u8>),
}

impl Connectors {
    /// Run one file operation on resource `name` (grant and kind already checked), waiting
    /// no later than `deadline` (the calling step's).
    pub fn files_op(
        &self,
        name: &str,
        op: FileOp<'_>,
        deadline: Option<Instant>,
    ) -> Result<FileOut, FilesError> {
        let unknown = || FilesError {
            kind: FilesErrorKind::UnknownResource,
            message: format!("Unknown resource: {name}"),
        };
        let r = self.resource(name).ok_or_else(unknown)?;
        match (r.kind.as_str(), r.driver.as_str()) {
            ("sftp", "ssh" | "paramiko") => {
                let conn = self.cached(name, ssh::SftpConn::open, unknown)?;
                conn.run(op, deadline)
            }
            _ => Err(FilesError {
                kind: FilesErrorKind::Connection,
                message: Connectors::unknown_driver(r, DRIVERS),
            }),
        }
    }
}
