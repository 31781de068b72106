//! A test secrets provider (wit/secrets.wit, world `secrets-provider`).
//!
//! - `decode`: ROT13 of ASCII letters. A value starting with `!` is rejected, and the
//!   rejection deliberately echoes the value, so the tests can check that the host never
//!   shows it. A value starting with `TRAP:` traps.
//! - `expand-env`: the env plus `SECRET_EXPANDED=yes`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "secrets-provider",
});

struct Rot13;

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            _ => c,
        })
        .collect()
}

impl Guest for Rot13 {
    fn decode(value: String) -> Result<String, String> {
        if value.starts_with('!') {
            return Err(format!("refusing to decode `{value}`"));
        }
        if value.starts_with("TRAP:") {
            panic!("asked to trap");
        }
        Ok(rot13(&value))
    }

    fn expand_env(env: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut env = env;
        env.retain(|(k, _)| k != "SECRET_EXPANDED");
        env.push(("SECRET_EXPANDED".into(), "yes".into()));
        env
    }
}

export!(Rot13);
