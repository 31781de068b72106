//! Secret redaction for everything the engine shows or stores: run events, error messages,
//! recorded step outputs and `aetherflow runs show`.
//!
//! Two rules, both replacing with `***`:
//!
//! 1. **Known secret values.** Every occurrence of a known secret (collected from the
//!    resolved resources with [`Redactor::from_resources`], or given to [`Redactor::new`]) is
//!    replaced in any string, whatever key it sits under. Longer secrets win over shorter
//!    ones that overlap them. Values shorter than [`MIN_SECRET_LEN`] characters and the
//!    words `true`, `false`, `null`, `none`, `yes`, `no`, `on`, `off` (any case) are ignored:
//!    replacing them would eat common words and numbers everywhere in the output.
//! 2. **Secret-like keys.** In a JSON value, whatever sits under a key that looks like a
//!    secret becomes the string `***` (a whole object or array included), see
//!    [`is_secret_key`].
//!
//! Map keys themselves are never rewritten.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::connectors::ResolvedResource;

/// What a redacted value or secret occurrence is replaced with.
pub const MASK: &str = "***";

/// Known secret values shorter than this (in characters) are ignored.
pub const MIN_SECRET_LEN: usize = 4;

/// Fragments that make a key secret-like, matched against the key lowercased with every
/// character that is not a letter or digit removed (so `api_key`, `API-KEY`, `apiKey` and
/// `x.apikey` all normalise to something containing `apikey`).
///
/// `key` alone is deliberately absent: outputs such as `lock_key`, `partition_key`,
/// `cache_key` or `sort_key` are ordinary data, and masking them would make run inspection
/// useless. `pwd` is absent too: `PWD` is the working directory.
pub const SECRET_KEY_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
];

/// Whether a value under this key must be masked: the key, lowercased and stripped of every
/// non-alphanumeric character, contains one of [`SECRET_KEY_FRAGMENTS`].
///
/// This over-masks a little on purpose (`max_tokens`, `secretary`), never the reverse.
pub fn is_secret_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_KEY_FRAGMENTS.iter().any(|f| norm.contains(f))
}

/// Replaces known secret values and values under secret-like keys with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Distinct known secrets, longest first.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these known secret values (too short or trivial ones are ignored).
    /// With no values it still applies the secret-like key rule in [`Redactor::redact_value`].
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut r = Redactor::default();
        r.extend(values);
        r
    }

    /// Adds known secret values.
    pub fn extend(&mut self, values: impl IntoIterator<Item = String>) {
        for v in values {
            if is_worth_masking(&v) && !self.secrets.contains(&v) {
                self.secrets.push(v);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        self.secrets
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// A redactor knowing every string found under a secret-like key (at any depth) in the
    /// resources' `config` and `options`, plus the password of every `scheme://user:pass@`
    /// URL found anywhere in them (a DSN under `url` or `dsn` is not a secret-like key).
    pub fn from_resources(resources: &[ResolvedResource]) -> Redactor {
        let mut values = Vec::new();
        for r in resources {
            for map in [&r.config, &r.options] {
                for (k, v) in map {
                    collect_secrets(k, v, false, &mut values);
                }
            }
        }
        Redactor::new(values)
    }

    /// Adds the values of environment variables whose name is secret-like
    /// (`DB_PASSWORD`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, ...).
    pub fn extend_from_env<'a>(&mut self, env: impl IntoIterator<Item = (&'a String, &'a String)>) {
        let values: Vec<String> = env
            .into_iter()
            .filter(|(k, _)| is_secret_key(k))
            .map(|(_, v)| v.clone())
            .collect();
        self.extend(values);
    }

    /// The known secret values, longest first.
    pub fn known(&self) -> &[String] {
        &self.secrets
    }

    /// Whether no secret value is known (the key rule still applies).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `s` with every occurrence of every known secret replaced by `***` (one left-to-right
    /// pass; at each position the longest matching secret wins). Borrowed when nothing
    /// matched.
    pub fn redact_str<'s>(&self, s: &'s str) -> Cow<'s, str> {
        if !self.secrets.iter().any(|x| s.contains(x.as_str())) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if let Some(hit) = self.secrets.iter().find(|x| rest.starts_with(x.as_str())) {
                out.push_str(MASK);
                rest = &rest[hit.len()..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Cow::Owned(out)
    }

    /// `v` with every value under a secret-like key replaced by `"***"` and known secrets
    /// replaced in every string (at any depth).
    pub fn redact_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact_str(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let x = if is_secret_key(k) && !x.is_null() {
                            Value::from(MASK)
                        } else {
                            self.redact_value(x)
                        };
                        (k.clone(), x)
                    })
                    .collect::<Map<String, Value>>(),
            ),
            other => other.clone(),
        }
    }

    /// Like [`Redactor::redact_value`] but only known secret values are replaced; the key
    /// rule is not applied. For data that is read back by the engine (outputs restored on
    /// resume), where masking a legitimately produced `token` output would change what later
    /// steps see.
    pub fn redact_known(&self, v: &Value) -> Value {
        if self.secrets.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.redact_str(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_known(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.redact_known(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn is_worth_masking(v: &str) -> bool {
    const TRIVIAL: &[&str] = &["true", "false", "null", "none", "yes", "no", "on", "off"];
    v.chars().count() >= MIN_SECRET_LEN && !TRIVIAL.iter().any(|t| v.eq_ignore_ascii_case(t))
}

/// Collects the strings under secret-like keys (`inside` = already under one) and the
/// passwords of URLs.
fn collect_secrets(key: &str, v: &Value, inside: bool, out: &mut Vec<String>) {
    let inside = inside || is_secret_key(key);
    match v {
        Value::String(s) => {
            if inside {
                out.push(s.clone());
            }
            if let Some(p) = url_password(s) {
                out.push(p.to_string());
            }
        }
        Value::Array(a) => {
            for x in a {
                collect_secrets(key, x, inside, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                collect_secrets(k, x, inside, out);
            }
        }
        _ => {}
    }
}

/// The password of `scheme://user:password@host...`, if any.
fn url_password(s: &str) -> Option<&str> {
    let (_, after) = s.split_once("://")?;
    let authority = after.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, pass) = userinfo.split_once(':')?;
    Some(pass).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(values: &[&str]) -> Redactor {
        Redactor::new(values.iter().map(|s| s.to_string()))
    }

    #[test]
    fn secret_like_keys() {
        for k in [
            "password",
            "DB_PASSWORD",
            "passwd",
            "api_key",
            "apiKey",
            "X-API-KEY",
            "access_token",
            "refreshToken",
            "client_secret",
            "AWS_SECRET_ACCESS_KEY",
            "private_key",
            "credentials",
            "Authorization",
            "ssh_passphrase",
        ] {
            assert!(is_secret_key(k), "{k} should be secret-like");
        }
        for k in [
            "key",
            "lock_key",
            "has_data",
            "count",
            "stdout",
            "user",
            "username",
            "host",
            "PWD",
            "keys",
            "monkey",
            "url",
            "dsn",
            "exit_code",
        ] {
            assert!(!is_secret_key(k), "{k} should not be secret-like");
        }
    }

    #[test]
    fn redact_str_replaces_every_occurrence() {
        let red = r(&["hunter2", "s3cr3t-value"]);
        assert_eq!(
            red.redact_str("pw=hunter2 again hunter2, other=s3cr3t-value."),
            "pw=*** again ***, other=***."
        );
    }

    #[test]
    fn redact_str_borrows_when_clean() {
        let red = r(&["hunter2"]);
        assert!(matches!(red.redact_str("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(
            Redactor::default().redact_str("x"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn longest_secret_wins() {
        let red = r(&["abcd", "abcdefgh"]);
        assert_eq!(red.known(), ["abcdefgh", "abcd"]);
        assert_eq!(red.redact_str("xabcdefghx abcdx"), "x***x ***x");
        // The mask itself never becomes part of a later match.
        let red = r(&["****", "ab**"]);
        assert_eq!(red.redact_str("ab**** "), "***** ");
    }

    #[test]
    fn short_and_trivial_values_are_ignored() {
        let red = r(&["abc", "", "true", "NULL", "off", "abcd"]);
        assert_eq!(red.known(), ["abcd"]);
        assert_eq!(red.redact_str("abc true off abcd"), "abc true off ***");
    }

    #[test]
    fn duplicates_are_kept_once() {
        let red = r(&["abcd", "abcd"]);
        assert_eq!(red.known().len(), 1);
    }

    #[test]
    fn unicode_is_handled_on_char_boundaries() {
        let red = r(&["päss-wörd"]);
        assert_eq!(red.redact_str("é päss-wörd ü"), "é *** ü");
    }

    #[test]
    fn redact_value_masks_keys_and_known_values() {
        let red = r(&["hunter2"]);
        let v = json!({
            "count": 3,
            "lock_key": "nightly",
            "api_token": "tok-123",
            "nested": {"Password": {"deep": 1}, "list": ["a hunter2 b", 5]},
            "stdout": "connecting with hunter2",
            "secret_missing": null,
        });
        assert_eq!(
            red.redact_value(&v),
            json!({
                "count": 3,
                "lock_key": "nightly",
                "api_token": "***",
                "nested": {"Password": "***", "list": ["a *** b", 5]},
                "stdout": "connecting with ***",
                "secret_missing": null,
            })
        );
        // With no known value only the key rule applies.
        assert_eq!(
            Redactor::default().redact_value(&v)["stdout"],
            "connecting with hunter2"
        );
    }

    #[test]
    fn redact_known_ignores_keys() {
        let red = r(&["hunter2"]);
        let v = json!({"token": "abc-generated", "out": ["hunter2"]});
        assert_eq!(
            red.redact_known(&v),
            json!({"token": "abc-generated", "out": ["***"]})
        );
    }

    fn resource(config: Value, options: Value) -> ResolvedResource {
        ResolvedResource {
            name: "db".into(),
            kind: "database".into(),
            driver: "sqlite".into(),
            config: config.as_object().cloned().unwrap_or_default(),
            options: options.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn from_resources_collects_secret_values() {
        let red = Redactor::from_resources(&[
            resource(
                json!({
                    "host": "db.local",
                    "user": "admin",
                    "password": "pa55word",
                    "auth": {"api_key": "k-999-xyz", "credentials": {"a": "cred-one", "b": ["cred-two"]}},
                    "url": "postgres://admin:url-pass@db.local:5432/app",
                    "port": 5432,
                }),
                json!({"token": "opt-token", "pin": "abc", "timeout": "30s"}),
            ),
            resource(json!({"secret": 1234}), Value::Null),
        ]);
        let mut known = red.known().to_vec();
        known.sort();
        assert_eq!(
            known,
            [
                "cred-one",
                "cred-two",
                "k-999-xyz",
                "opt-token",
                "pa55word",
                "url-pass"
            ]
        );
        assert_eq!(
            red.redact_str("login admin:pa55word@db.local timeout 30s"),
            "login admin:***@db.local timeout 30s"
        );
    }

    #[test]
    fn url_passwords() {
        assert_eq!(url_password("postgres://u:p%40ss@h/db"), Some("p%40ss"));
        assert_eq!(url_password("https://u@h/x:y@z"), None);
        assert_eq!(url_password("https://h/path?a=b:c@d"), None);
        assert_eq!(url_password("no url"), None);
        assert_eq!(url_password("s://u:@h"), None);
    }

    #[test]
    fn secrets_from_env() {
        let env: std::collections::BTreeMap<String, String> = [
            ("DB_PASSWORD", "envpass1"),
            ("HOME", "/home/someone"),
            ("GITHUB_TOKEN", "ghp_abcdef"),
            ("FEATURE_SECRET", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut red = Redactor::default();
        red.extend_from_env(&env);
        assert_eq!(red.known(), ["ghp_abcdef", "envpass1"]);
    }
}
