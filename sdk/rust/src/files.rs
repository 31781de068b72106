//! Remote files over a granted `sftp` resource (the WIT `files` interface).
//!
//! Remote paths are the server's paths; local paths name files in the job workspace (the
//! host refuses any local path outside it). Every function takes the resource name, which
//! the step must have declared with [`crate::Info::needs`].
//!
//! ```ignore
//! use aetherflow_sdk::files;
//! for f in files::list("files", "/inbox")? {
//!     if !f.is_dir {
//!         files::download("files", &f.path, &ctx.artifacts_dir.join(&f.name))?;
//!     }
//! }
//! ```

use std::path::Path;

use crate::bindings::aetherflow::step::files as wit;
use crate::{Error, ErrorKind};

pub use wit::{FilesErrorKind, RemoteFileMeta};

/// A failed file operation: what went wrong (`kind`) and the host's message.
#[derive(Debug, Clone)]
pub struct FilesError {
    pub kind: FilesErrorKind,
    pub message: String,
}

impl std::fmt::Display for FilesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilesError {}

impl From<wit::FilesError> for FilesError {
    fn from(e: wit::FilesError) -> Self {
        FilesError {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// A file error becomes a step error: `outside-workspace` is an invalid input, the rest
/// are connector failures.
impl From<FilesError> for Error {
    fn from(e: FilesError) -> Self {
        let kind = match e.kind {
            FilesErrorKind::OutsideWorkspace => ErrorKind::InvalidInput,
            _ => ErrorKind::Connector,
        };
        Error::new(kind, e.message)
    }
}

fn local(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The entries of a remote directory (not recursive), sorted by name; `path` is
/// `<dir>/<name>`, `rel_path` is unset.
pub fn list(resource: &str, dir: &str) -> Result<Vec<RemoteFileMeta>, FilesError> {
    wit::list(resource, dir).map_err(Into::into)
}

/// A whole remote file (for small files; use [`download`] for large ones).
pub fn read_bytes(resource: &str, path: &str) -> Result<Vec<u8>, FilesError> {
    wit::read_bytes(resource, path).map_err(Into::into)
}

/// Write a whole remote file, creating missing parent directories.
pub fn write_bytes(resource: &str, path: &str, data: &[u8]) -> Result<(), FilesError> {
    wit::write_bytes(resource, path, data).map_err(Into::into)
}

/// Copy a workspace file to a remote path (parents created; written under a temporary
/// name and renamed).
pub fn upload(resource: &str, local_path: &Path, remote_path: &str) -> Result<(), FilesError> {
    wit::upload(resource, &local(local_path), remote_path).map_err(Into::into)
}

/// Copy a remote file into the workspace (temporary name, then renamed). The local parent
/// directory must exist.
pub fn download(resource: &str, remote_path: &str, local_path: &Path) -> Result<(), FilesError> {
    wit::download(resource, remote_path, &local(local_path)).map_err(Into::into)
}

/// Delete a file, or an empty directory (with `recursive`, a whole tree).
pub fn delete(resource: &str, path: &str, recursive: bool) -> Result<(), FilesError> {
    wit::delete(resource, path, recursive).map_err(Into::into)
}

/// Create a directory (with `parents`, also the missing ones above it).
pub fn mkdir(resource: &str, path: &str, parents: bool) -> Result<(), FilesError> {
    wit::mkdir(resource, path, parents).map_err(Into::into)
}
