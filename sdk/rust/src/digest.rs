//! Digests computed by the host in native code: much faster than hashing inside the
//! sandbox (no SHA instructions there), and only the digest comes back.

use crate::bindings::aetherflow::step::digest as wit;

/// A SHA-256 hasher: `update` with the bytes, `finish` for the hex digest.
pub struct Sha256(wit::Sha256);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(wit::Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.0.update(data);
        }
    }

    /// The SHA-256 of everything fed, as 64 lowercase hex digits.
    pub fn finish(self) -> String {
        self.0.finish()
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
