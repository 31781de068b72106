//! `type: <name>@sha256:<hex>`: a step type pinned to the sha256 of its component file.

/// How a pinned step type is written (quoted by errors).
pub const PIN_SYNTAX: &str = "<name>@sha256:<64 hex digits>";

/// 64 hexadecimal digits (either case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Split a step type into its name and pinned digest (lowercased).
/// `greet` -> (`greet`, None); `greet@sha256:AB..` -> (`greet`, Some(`ab..`)).
/// Anything else after an `@` is an error (the message says what is expected).
pub fn split_type_pin(type_: &str) -> Result<(&str, Option<String>), String> {
    let Some((name, pin)) = type_.split_once('@') else {
        return Ok((type_, None));
    };
    match pin.strip_prefix("sha256:") {
        Some(hex) if !name.is_empty() && is_sha256_hex(hex) => {
            Ok((name, Some(hex.to_ascii_lowercase())))
        }
        _ => Err(format!(
            "a pinned step type is written `{PIN_SYNTAX}`; got `{type_}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_and_pins() {
        let hex = "AB".repeat(32);
        assert_eq!(split_type_pin("greet").unwrap(), ("greet", None));
        assert_eq!(
            split_type_pin(&format!("greet@sha256:{hex}")).unwrap(),
            ("greet", Some("ab".repeat(32)))
        );
        for bad in [
            "greet@1.2.0".to_string(),
            "greet@sha256:abc".to_string(),
            format!("@sha256:{hex}"),
            format!("greet@sha512:{hex}"),
            format!("greet@sha256:{}", "g".repeat(64)),
        ] {
            let e = split_type_pin(&bad).unwrap_err();
            assert!(e.contains(PIN_SYNTAX) && e.contains(&bad), "{e}");
        }
    }
}
