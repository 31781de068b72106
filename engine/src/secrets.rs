//! Secrets decode providers (parity §6.5, redesigned).
//!
//! The reference loads a Python module with `decode(value) -> str` (and `expand_env`).
//! Here a provider is a [`SecretsProvider`] chosen by `AETHERFLOW_SECRETS_PROVIDER`:
//!
//! * `base64`: standard base64 (padding optional) decoded to a UTF-8 string.
//! * `component`: a WebAssembly component implementing the `secrets-provider` world of
//!   wit/secrets.wit (`decode` and `expand-env`), loaded from
//!   `AETHERFLOW_SECRETS_COMPONENT` and sandboxed more tightly than a step (no files,
//!   env, args or sockets; a fresh instance per call, a deadline and a memory cap).
//!
//! The Python hook variables `AETHERFLOW_SECRETS_MODULE` / `AETHERFLOW_SECRETS_PATH` are
//! not supported.
//!
//! Decoded values are never logged or put into an error message: errors name the
//! resource, the field and the provider only.

use std::path::PathBuf;
use std::sync::Arc;

use crate::sandbox::{ComponentSecretsProvider, Sandbox};
use crate::settings::EnvSnapshot;

/// The variable that selects the provider.
pub const PROVIDER_VAR: &str = "AETHERFLOW_SECRETS_PROVIDER";

/// The path of the provider component (`AETHERFLOW_SECRETS_PROVIDER=component`).
pub const COMPONENT_VAR: &str = "AETHERFLOW_SECRETS_COMPONENT";

/// Names accepted by [`provider_from_env`].
pub const KNOWN_PROVIDERS: &[&str] = &["base64", "component"];

/// Why one value could not be decoded. Must never contain the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeFailure(pub String);

/// Turns an encoded string (a rendered resource field marked in `decode`) into the secret.
pub trait SecretsProvider: Send + Sync {
    /// Short name used in messages (`base64`).
    fn name(&self) -> &str;
    fn decode(&self, value: &str) -> Result<String, DecodeFailure>;

    /// The environment one resource is rendered with, computed from a copy of the run's
    /// snapshot (the reference's `expand_env`). `None`: the provider does not expand the
    /// environment (the snapshot is used as is). The result never reaches step inputs.
    fn expand_env(&self, _env: &EnvSnapshot) -> Result<Option<EnvSnapshot>, DecodeFailure> {
        Ok(None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("unknown secrets provider {PROVIDER_VAR}=`{name}`: supported providers are: {}", KNOWN_PROVIDERS.join(", "))]
    UnknownProvider { name: String },
    #[error(
        "{PROVIDER_VAR}=component needs {COMPONENT_VAR}=<path of the provider .wasm component>"
    )]
    ComponentUnset,
    #[error("{COMPONENT_VAR}={path}: cannot read the secrets provider component: {message}")]
    ComponentRead { path: String, message: String },
    #[error("{COMPONENT_VAR}={path}: cannot load the secrets provider component: {message}")]
    ComponentLoad { path: String, message: String },
}

/// The provider selected by the snapshot (`None` when `AETHERFLOW_SECRETS_PROVIDER` is
/// unset or empty). A `component` provider gets a sandbox of its own (with the component
/// cache of the snapshot's settings); see [`provider_from_env_with`] to share one.
pub fn provider_from_env(
    env: &EnvSnapshot,
) -> Result<Option<Box<dyn SecretsProvider>>, SecretsError> {
    provider_from_env_with(env, None)
}

/// [`provider_from_env`], loading a `component` provider into `sandbox` when given (the
/// provider keeps it alive: its epoch ticker drives the call deadlines).
pub fn provider_from_env_with(
    env: &EnvSnapshot,
    sandbox: Option<Arc<Sandbox>>,
) -> Result<Option<Box<dyn SecretsProvider>>, SecretsError> {
    let Some(name) = env
        .get(PROVIDER_VAR)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    match name.to_ascii_lowercase().as_str() {
        "base64" => Ok(Some(Box::new(Base64Provider))),
        "component" => Ok(Some(Box::new(WasmProvider::from_env(env, sandbox)?))),
        _ => Err(SecretsError::UnknownProvider { name: name.into() }),
    }
}

/// A `secrets-provider` component (wit/secrets.wit), with the sandbox that runs it.
pub struct WasmProvider {
    // Dropped before the sandbox (declaration order).
    component: ComponentSecretsProvider,
    _sandbox: Arc<Sandbox>,
    name: String,
}

impl WasmProvider {
    /// Load the component named by `AETHERFLOW_SECRETS_COMPONENT`.
    pub fn from_env(
        env: &EnvSnapshot,
        sandbox: Option<Arc<Sandbox>>,
    ) -> Result<Self, SecretsError> {
        let path = env
            .get(COMPONENT_VAR)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .ok_or(SecretsError::ComponentUnset)?;
        let sandbox = match sandbox {
            Some(s) => s,
            None => {
                let cache = crate::settings::Settings::from_env(env)
                    .ok()
                    .and_then(|s| s.component_cache);
                Arc::new(
                    Sandbox::new(cache).map_err(|e| SecretsError::ComponentLoad {
                        path: path.to_string(),
                        message: e.to_string(),
                    })?,
                )
            }
        };
        Self::load(PathBuf::from(path), sandbox)
    }

    pub fn load(path: PathBuf, sandbox: Arc<Sandbox>) -> Result<Self, SecretsError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| SecretsError::ComponentRead {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let component = sandbox.load_secrets_provider(&bytes, &shown).map_err(|e| {
            SecretsError::ComponentLoad {
                path: shown.clone(),
                message: match e {
                    crate::sandbox::SandboxError::Load { message, .. } => message,
                    other => other.to_string(),
                },
            }
        })?;
        Ok(WasmProvider {
            component,
            _sandbox: sandbox,
            name: format!("component ({shown})"),
        })
    }
}

impl SecretsProvider for WasmProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn decode(&self, value: &str) -> Result<String, DecodeFailure> {
        match self.component.decode(value) {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(reason)) => Err(DecodeFailure(reason)),
            Err(trap) => Err(DecodeFailure(trap)),
        }
    }

    fn expand_env(&self, env: &EnvSnapshot) -> Result<Option<EnvSnapshot>, DecodeFailure> {
        let list: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let out = self.component.expand_env(&list).map_err(DecodeFailure)?;
        Ok(Some(out.into_iter().collect()))
    }
}

/// Standard base64 (RFC 4648 alphabet `A-Z a-z 0-9 + /`), padding optional, surrounding
/// whitespace ignored; the bytes must be UTF-8.
#[derive(Debug, Default, Clone, Copy)]
pub struct Base64Provider;

impl SecretsProvider for Base64Provider {
    fn name(&self) -> &str {
        "base64"
    }

    fn decode(&self, value: &str) -> Result<String, DecodeFailure> {
        let bytes = base64_decode(value.trim())?;
        String::from_utf8(bytes)
            .map_err(|_| DecodeFailure("the decoded bytes are not valid UTF-8".into()))
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

fn base64_decode(s: &str) -> Result<Vec<u8>, DecodeFailure> {
    let bytes = s.as_bytes();
    let body_len = bytes.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    let padding = bytes.len() - body_len;
    if padding > 2 || (padding > 0 && !bytes.len().is_multiple_of(4)) {
        return Err(DecodeFailure("invalid base64 padding".into()));
    }
    let body = &bytes[..body_len];
    if body.len() % 4 == 1 {
        return Err(DecodeFailure(
            "invalid base64 length (truncated value?)".into(),
        ));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for (ci, chunk) in body.chunks(4).enumerate() {
        let mut acc: u32 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let v = sextet(c).ok_or_else(|| {
                DecodeFailure(format!(
                    "invalid base64 character at position {}",
                    ci * 4 + i + 1
                ))
            })?;
            acc |= v << (18 - 6 * i);
        }
        let n = chunk.len() - 1; // 3 chars → 2 bytes, 2 chars → 1 byte
        let b = acc.to_be_bytes();
        out.extend_from_slice(&b[1..1 + n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        let p = Base64Provider;
        assert_eq!(p.decode("cGFzcw==").unwrap(), "pass");
        assert_eq!(p.decode("cGFzcw").unwrap(), "pass");
        assert_eq!(p.decode(" aGk= ").unwrap(), "hi");
        assert_eq!(p.decode("").unwrap(), "");
        assert_eq!(p.decode("w6k=").unwrap(), "é");
        assert_eq!(p.decode("YWJj").unwrap(), "abc");
        assert!(p.decode("not base64!").is_err());
        assert!(p.decode("a").is_err());
        assert!(p.decode("YQ===").is_err());
        assert!(p.decode("/w==").is_err()); // 0xff is not UTF-8
    }

    #[test]
    fn provider_selection() {
        let mut env = EnvSnapshot::new();
        assert!(provider_from_env(&env).unwrap().is_none());
        env.insert(PROVIDER_VAR.into(), " Base64 ".into());
        assert_eq!(provider_from_env(&env).unwrap().unwrap().name(), "base64");
        env.insert(PROVIDER_VAR.into(), "vault".into());
        assert!(provider_from_env(&env).is_err());
    }
}
