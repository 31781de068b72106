//! Remote-files connectors (kind `sftp`, drivers `ssh`/`paramiko`): the host side of the WIT
//! `files` interface.

use std::path::Path;

use super::Connectors;
use crate::sandbox::bindings::aetherflow::step::files::{
    FilesError, FilesErrorKind, RemoteFileMeta,
};

/// Resource kinds the `files` interface serves.
pub const KINDS: &[&str] = &["sftp"];
/// Drivers this build implements.
pub const DRIVERS: &[&str] = &[];

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
    /// Run one file operation on resource `name` (grant and kind already checked).
    pub fn files_op(&self, name: &str, _op: FileOp<'_>) -> Result<FileOut, FilesError> {
        let r = self.resource(name).ok_or_else(|| FilesError {
            kind: FilesErrorKind::UnknownResource,
            message: format!("Unknown resource: {name}"),
        })?;
        Err(FilesError {
            kind: FilesErrorKind::Connection,
            message: Connectors::unknown_driver(r, DRIVERS),
        })
    }
}
