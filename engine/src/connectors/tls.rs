//! TLS helpers shared by the network connectors (`rest`, `mail`, `postgres`), all on the
//! one rustls stack (ring) that ureq and lettre already use: reading a private CA bundle,
//! the certificate verifiers libpq's `sslmode` needs, and turning a certificate failure
//! buried in a client's error chain into words a person can act on.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;

use super::ResolvedResource;

/// A TLS setting of a resource: `options.<key>`, else `config.<key>` (null counts as unset),
/// so a TLS option works in either place.
pub fn setting<'a>(r: &'a ResolvedResource, key: &str) -> Option<&'a Value> {
    r.options
        .get(key)
        .filter(|v| !v.is_null())
        .or_else(|| r.config.get(key).filter(|v| !v.is_null()))
}

/// The crypto provider of every TLS client here (ring, as ureq's and lettre's).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A flag such as `verify_ssl` given as a boolean, a number, or text (`true`/`false`,
/// `yes`/`no`, `on`/`off`, `1`/`0`: env-rendered values are text); `None` for anything else.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// `~/x` → `$HOME/x`; anything else as it is.
pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(p),
    }
}

/// The certificates of a PEM file (a CA bundle: one or more `BEGIN CERTIFICATE` blocks),
/// each checked to be usable as a trust anchor. The error says what is wrong with the file;
/// the caller adds which resource and option named it.
pub fn read_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let full = expand_home(path.trim());
    let bytes = std::fs::read(&full)
        .map_err(|e| format!("cannot read the CA file `{}`: {e}", full.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "the CA file `{}` is not valid PEM ({e}); it must hold the CA certificate(s) as \
                 `-----BEGIN CERTIFICATE-----` blocks",
                full.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "the CA file `{}` holds no certificate; it must hold the CA certificate(s) as \
             `-----BEGIN CERTIFICATE-----` blocks (PEM)",
            full.display()
        ));
    }
    let mut store = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store.add(c.clone()).map_err(|e| {
            format!(
                "certificate {} of the CA file `{}` cannot be used as a CA: {e}",
                i + 1,
                full.display()
            )
        })?;
    }
    Ok(certs)
}

/// A root store of `certs`.
pub fn root_store(certs: &[CertificateDer<'static>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    // Every certificate was checked by `read_ca_file`.
    let _ = store.add_parsable_certificates(certs.iter().cloned());
    store
}

/// The bundled Mozilla roots (webpki-roots), as ureq and lettre use by default.
pub fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A failed certificate check found anywhere in `e`'s chain of causes (also inside an
/// `io::Error`, where TLS streams put it), described for a person; `None` when the failure
/// is not about the server's certificate.
pub fn certificate_problem(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return describe(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = certificate_problem(inner) {
                    return Some(found);
                }
            }
        }
        current = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> Option<String> {
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    Some(match c {
        CertificateError::UnknownIssuer => {
            "the server's certificate is not signed by a trusted certificate authority \
             (unknown issuer)"
                .to_string()
        }
        CertificateError::NotValidForName => {
            "the server's certificate is not valid for the host name connected to".to_string()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the server's certificate is not valid for `{}` (it names {})",
            expected.to_str(),
            if presented.is_empty() {
                "no host".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet".to_string()
        }
        other => format!(
            "the server's certificate was refused: {}",
            rustls::Error::InvalidCertificate(other.clone())
        ),
    })
}

/// Accepts any server certificate (libpq's `sslmode=prefer`/`require` without a root
/// certificate): the session is encrypted, but the server is not authenticated. The
/// handshake signatures are still checked, so the session keys belong to that certificate.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks that the certificate chains to a trusted root, but not the host name in it
/// (libpq's `sslmode=verify-ca`).
#[derive(Debug)]
pub struct ChainOnly(pub Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain
        // is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = read_ca_file(missing.to_str().unwrap()).unwrap_err();
        assert!(e.starts_with("cannot read the CA file"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = read_ca_file(empty.to_str().unwrap()).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file(bad.to_str().unwrap()).unwrap_err();
        assert!(e.contains("cannot be used as a CA"), "{e}");
    }

    #[test]
    fn certificate_problems_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let p = certificate_problem(&io).unwrap();
        assert!(p.contains("unknown issuer"), "{p}");
        let other = std::io::Error::other("connection reset");
        assert!(certificate_problem(&other).is_none());
    }
}
