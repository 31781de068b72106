//! §2.9 test vectors and phase-root tests.

use aetherflow_template::when::{evaluate, validate, WhenError};
use aetherflow_template::{
    render, render_str, scan, scan_each_leaf, Phase, ResolveError, ScanKind,
};
use serde_json::{json, Map, Value};

fn ctx() -> Map<String, Value> {
    let v = json!({
        "env": {"A": "x", "E": "", "N": "5", "B": "${Y}"},
        "steps": {"s": {"n": 3, "l": [1, 2], "d": {"k": "v"}}},
        "run_id": "R",
    });
    v.as_object().cloned().unwrap_or_default()
}

fn step(s: &str) -> Result<Value, ResolveError> {
    render_str(s, &ctx(), Phase::Step)
}

fn syntax_detail(s: &str) -> String {
    match step(s) {
        Err(ResolveError::Syntax { detail }) => detail,
        other => panic!("expected syntax error for {s:?}, got {other:?}"),
    }
}

#[test]
fn vectors_values() {
    let cases: Vec<(&str, Value)> = vec![
        ("{{env.A}}", json!("x")),
        ("{{ env.A }}", json!("x")),
        ("pre {{env.A}} post", json!("pre x post")),
        ("{{steps.s.n}}", json!(3)),
        ("n={{steps.s.n}}", json!("n=3")),
        ("{{steps.s.l}}", json!([1, 2])),
        ("{{steps.s.d}}", json!({"k": "v"})),
        ("{{env.E:dflt}}", json!("dflt")),
        ("{{env.MISSING: spaced }}", json!(" spaced ")),
        ("x{{env.MISSING: spaced }}x", json!("x spacedx")),
        ("{{env.MISSING:}}", json!("")),
        ("{{ env.MISSING : d }}", json!(" d")),
        ("{{env.MISSING:a:b}}", json!("a:b")),
        ("{{env.A}} }}", json!("x }}")),
        ("}}", json!("}}")),
        ("{x}", json!("{x}")),
        ("{{env.A}}\n", json!("x")),
        (" {{env.A}}", json!(" x")),
        ("{{ steps.s.n:0 }}", json!(3)),
        ("{{env.B}}", json!("${Y}")),
        (
            "l={{steps.s.l}} d={{steps.s.d}}",
            json!("l=[1, 2] d={'k': 'v'}"),
        ),
        ("plain", json!("plain")),
        ("", json!("")),
    ];
    for (input, want) in cases {
        assert_eq!(step(input), Ok(want), "input {input:?}");
    }
}

#[test]
fn vectors_missing() {
    assert_eq!(
        step("{{env.E}}"),
        Err(ResolveError::MissingKey {
            path: "env.E".into()
        })
    );
    assert_eq!(
        step("{{env.Ä}}"),
        Err(ResolveError::MissingKey {
            path: "env.Ä".into()
        })
    );
    assert_eq!(
        step("{{env.E}}").unwrap_err().to_string(),
        "missing template key 'env.E'"
    );
}

#[test]
fn vectors_syntax() {
    let prefix = "Unsupported templating syntax. Use {{VAR}} or {{VAR:DEFAULT}}\n";
    let e = step("{}").unwrap_err().to_string();
    assert_eq!(e, format!("{prefix}_contains_forbidden_syntax {{}}"));
    assert_eq!(
        syntax_detail("{{env.MISSING:{x}}}"),
        "Empty token or nested braces are not allowed."
    );
    assert_eq!(
        syntax_detail("}} {{env.A}}"),
        "premature_close <> -1 }} {{env.A}}"
    );
    for s in ["{}", "${X}", "{% x %}", "{# c #}"] {
        assert_eq!(syntax_detail(s), format!("_contains_forbidden_syntax {s}"));
    }
    assert_eq!(
        syntax_detail("{{env.A | lower}}"),
        "_is_valid_path False env.A | lower"
    );
    assert_eq!(
        syntax_detail("{{ }}"),
        "Empty token or nested braces are not allowed."
    );
    assert_eq!(syntax_detail("{{env.A"), "missing_close <> -1 {{env.A");
    assert_eq!(syntax_detail("{{env..A}}"), "_is_valid_path False env..A");
    assert_eq!(syntax_detail("{{1abc}}"), "_is_valid_path False 1abc");
    assert_eq!(
        syntax_detail("{{foo.bar}}"),
        "allowed_roots foo foo.bar {'env', 'flow_id', 'job', 'jobs', 'result', 'run_id', 'steps'}"
    );
    assert_eq!(
        syntax_detail("a{{env.B}}"),
        "_contains_forbidden_syntax a${Y}"
    );
}

#[test]
fn phase_roots() {
    let c = ctx();
    for phase in [Phase::Resource, Phase::FlowMeta] {
        for s in ["{{steps.s.n}}", "{{run_id}}", "a {{jobs.x}}"] {
            match render_str(s, &c, phase) {
                Err(ResolveError::Syntax { detail }) => {
                    assert!(detail.starts_with("allowed_roots "), "{detail}");
                    assert!(detail.ends_with(" {'env'}"), "{detail}");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(render_str("{{env.A}}", &c, phase), Ok(json!("x")));
    }
    assert_eq!(render_str("{{run_id}}", &c, Phase::Step), Ok(json!("R")));
    assert_eq!(
        render_str("{{jobs.x}}", &c, Phase::Step),
        Err(ResolveError::MissingKey {
            path: "jobs.x".into()
        })
    );
}

#[test]
fn walk() {
    let input = json!({"a": "{{steps.s.n}}", "b": [1, null, true, "{{env.A}}-"], "{{env.A}}": 2.5});
    let out = render(&input, &ctx(), Phase::Step);
    assert_eq!(
        out,
        Ok(json!({"a": 3, "b": [1, null, true, "x-"], "{{env.A}}": 2.5}))
    );
}

#[test]
fn odd_strings_never_panic() {
    let c = ctx();
    let odd = [
        "{",
        "}",
        "{{",
        "}}}",
        "{{{",
        "{{{{}}}}",
        "{{:}}",
        "{{env.:}}",
        "{{é}}",
        "{{env.é}}",
        "日本{{env.A}}語",
        "{{\u{0}}}",
        "{{env.A\n}}",
        "{{env.A:\n}}\n",
        "{{env.A}}\n\n",
        "\u{1c}{{env.A}}\u{1f}",
        "{{ \u{3000}env.A\u{3000} }}",
        "{{env.A}}}",
        "{{env.A}}{{",
        "🦀{{🦀}}",
        "{{_}}",
        "{{env._}}",
        "{{a.b.c.d.e.f}}",
        ":",
        "{{env.A:}}}",
        "{{env.A:{}}",
    ];
    for s in odd {
        for phase in [Phase::Resource, Phase::FlowMeta, Phase::Step] {
            let _ = render_str(s, &c, phase);
        }
    }
    let long = "{{".repeat(10_000) + &"}}".repeat(10_000);
    let _ = render_str(&long, &c, Phase::Step);
    let mut nested = json!("{{env.A}}");
    for _ in 0..100 {
        nested = json!([{ "k": nested }]);
    }
    assert!(render(&nested, &c, Phase::Step).is_ok());
}

fn jobs() -> Value {
    json!({"probe": {"status": "SUCCESS", "outputs": {
        "has_data": true, "count": 3, "s": "true", "n": null, "lst": [1]}}})
}

#[test]
fn when_vectors() {
    let ok_true = [
        "True",
        "jobs.probe.outputs.has_data == true",
        "jobs.probe.outputs.has_data==true",
        "jobs.probe.outputs.has_data",
        "jobs.probe.outputs.count > 0",
        "jobs.probe.outputs.s == 'true'",
        "jobs.probe.status == 'SUCCESS'",
        "1 < jobs.probe.outputs.count < 5",
        "jobs.probe.outputs.n == None",
        "jobs.probe.outputs.lst",
        "  ",
        "",
        "jobs.probe.outputs",
        "jobs.probe.outputs.count >= 3 and not jobs.probe.outputs.n",
        "(jobs.probe.outputs.n or 'd') == 'd'",
        "jobs.probe.outputs.count == 3.0",
        "jobs.probe.outputs.has_data == 1",
    ];
    for e in ok_true {
        assert_eq!(validate(e), Ok(()), "{e}");
        assert_eq!(evaluate(e, &jobs()), Ok(true), "{e}");
    }
    let ok_false = [
        "not jobs.probe.outputs.has_data",
        "jobs.probe.outputs.s == true",
        "jobs.probe.outputs.s == 'is true'",
        "jobs.probe.__class__ == 1",
        "5 < jobs.probe.outputs.count < 10",
        "jobs.probe.outputs.count < 1 < 5",
    ];
    for e in ok_false {
        assert_eq!(validate(e), Ok(()), "{e}");
        assert_eq!(evaluate(e, &jobs()), Ok(false), "{e}");
    }
    for (e, name) in [
        ("true", "true"),
        ("(true)", "true"),
        ("TRUE", "TRUE"),
        ("x == 1", "x"),
    ] {
        assert_eq!(validate(e), Err(format!("Unsupported name: {name}")));
        assert_eq!(
            evaluate(e, &jobs()).unwrap_err().to_string(),
            format!("Unsupported name in job.when: {name}")
        );
    }
    for (e, node) in [
        ("jobs.probe.outputs.count in [1]", "In"),
        ("jobs.probe.outputs.count + 1 > 0", "BinOp"),
        ("len(jobs)", "Call"),
        ("jobs.probe.outputs.n is not None", "IsNot"),
        ("-1", "USub"),
        ("jobs.a[0]", "Subscript"),
    ] {
        assert_eq!(validate(e), Err(format!("Unsupported node: {node}")));
        assert_eq!(
            evaluate(e, &jobs()).unwrap_err().to_string(),
            format!("Unsupported expression in job.when: {node}")
        );
    }
    let e = "jobs.probe.outputs.has_data == true or";
    assert_eq!(validate(e), Err("Syntax error: invalid syntax".into()));
    assert_eq!(
        evaluate(e, &jobs()).unwrap_err().to_string(),
        "invalid syntax (<unknown>, line 1)"
    );
    assert!(matches!(
        evaluate("jobs.probe.outputs.count > '0'", &jobs()),
        Err(WhenError::Type { .. })
    ));
    assert_eq!(
        evaluate("jobs.probe.outputs.count > '0'", &jobs())
            .unwrap_err()
            .to_string(),
        "'>' not supported between instances of 'int' and 'str'"
    );
    for (e, path) in [
        (
            "jobs.probe.outputs.missing == 1",
            "jobs.probe.outputs.missing",
        ),
        ("jobs.nope.outputs.x", "jobs.nope"),
    ] {
        assert_eq!(validate(e), Ok(()));
        match evaluate(e, &jobs()) {
            Err(WhenError::Attribute { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{e}: {other:?}"),
        }
    }
    // Short-circuit: Python never evaluates the missing attribute.
    assert!(evaluate("not jobs.probe.outputs.n and jobs.nope.x", &jobs()).is_err());
    assert_eq!(
        evaluate("jobs.probe.outputs.n and jobs.nope.x", &jobs()),
        Ok(false)
    );
}

#[test]
fn scan_helper() {
    let env = json!({"A": "x"}).as_object().cloned().unwrap_or_default();
    let v = json!({"a": "{{env.M1}}", "b": "{{env.M2}}"});
    let f = scan(&v, &env, Phase::Resource);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].path, "a");
    assert_eq!(
        f[0].kind,
        ScanKind::MissingEnv {
            key: "env.M1".into()
        }
    );

    let v = json!({"x": ["{{steps.a.b}}", "{{env.M}}"], "y": "{{foo.z}} {{bar}}"});
    let f = scan(&v, &env, Phase::Step);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].path, "y");
    assert_eq!(f[0].kind, ScanKind::UnknownRoot { root: "foo".into() });
    assert_eq!(f[1].kind, ScanKind::UnknownRoot { root: "bar".into() });

    let v = json!({"x": "{{env.M}}", "y": "{{foo.z}}"});
    let f = scan(&v, &env, Phase::Step);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].path, "x");
    assert_eq!(
        f[1].kind,
        ScanKind::MissingEnv {
            key: "env.M".into()
        }
    );

    let v = json!({"x": "{{foo.z}}"});
    let f = scan(&v, &env, Phase::Step);
    assert!(
        matches!(&f[1].kind, ScanKind::Syntax { message } if message.contains("allowed_roots foo"))
    );

    let v = json!({"p": {"a": "{{env.M1}}", "b": "{{env.M2}}", "c": "${X}"}});
    let f = scan_each_leaf(&v, &env);
    assert_eq!(f.len(), 3);
    assert_eq!(f[1].path, "p.b");
}

/// Validator messages checked against CPython 3.11 + aetherflow-core 0.0.14.
#[test]
fn when_validator_matches_python() {
    let cases: &[(&str, Option<&str>)] = &[
        ("a ==", Some("Syntax error: invalid syntax")),
        ("(a", Some("Syntax error: '(' was never closed")),
        ("((a)", Some("Syntax error: '(' was never closed")),
        ("a)", Some("Syntax error: unmatched ')'")),
        ("'abc", Some("Syntax error: unterminated string literal (detected at line 1)")),
        ("\"abc", Some("Syntax error: unterminated string literal (detected at line 1)")),
        ("'''a", Some("Syntax error: unterminated triple-quoted string literal (detected at line 1)")),
        ("a b", Some("Syntax error: invalid syntax")),
        ("1abc", Some("Syntax error: invalid decimal literal")),
        ("not", Some("Syntax error: invalid syntax")),
        ("x if y else z", Some("Unsupported node: IfExp")),
        ("lambda: 1", Some("Unsupported node: Lambda")),
        ("[1", Some("Syntax error: '[' was never closed")),
        ("a,", Some("Unsupported node: Tuple")),
        ("1_000", None),
        ("0x1f", None),
        ("1e5", None),
        ("(a b", Some("Syntax error: '(' was never closed")),
        ("(a]", Some("Syntax error: closing parenthesis ']' does not match opening parenthesis '('")),
        ("a b )", Some("Syntax error: unmatched ')'")),
        ("(a b)", Some("Syntax error: invalid syntax. Perhaps you forgot a comma?")),
        ("[1 2]", Some("Syntax error: invalid syntax. Perhaps you forgot a comma?")),
        ("€", Some("Syntax error: invalid character '€' (U+20AC)")),
        ("f(x for x in y)", Some("Unsupported node: Call")),
        ("(a := 1)", Some("Unsupported node: NamedExpr")),
        ("a.b.c if x", Some("Syntax error: expected 'else' after 'if' expression")),
        ("01", Some("Syntax error: leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers")),
        ("0b", Some("Syntax error: invalid binary literal")),
        ("1.real", Some("Syntax error: invalid decimal literal")),
        ("~a", Some("Unsupported node: Invert")),
        ("+a", Some("Unsupported node: UAdd")),
        ("{}", Some("Unsupported node: Dict")),
        ("[]", Some("Unsupported node: List")),
        ("print", Some("Unsupported name: print")),
        ("jobs.x == b\"a\"", None),
        ("jobs.x == f'a'", Some("Unsupported node: JoinedStr")),
        ("await x", Some("Unsupported node: Await")),
        ("jobs.if", Some("Syntax error: invalid syntax")),
        ("None.x", None),
        ("f(**a, *b)", Some("Syntax error: iterable argument unpacking follows keyword argument unpacking")),
        ("a # c", Some("Unsupported name: a")),
        ("$", Some("Syntax error: invalid syntax")),
        ("jobs.a <> 1", Some("Syntax error: invalid syntax")),
    ];
    for (expr, want) in cases {
        let got = validate(expr).err();
        assert_eq!(got.as_deref(), *want, "{expr:?}");
    }
    for s in [
        "((((((",
        "\u{0}",
        "'\\x'",
        "jobs.a == '\\u12'",
        "))))",
        "0x",
        "1e",
        "...",
    ] {
        let _ = validate(s);
        let _ = evaluate(s, &jobs());
    }
    let deep = "(".repeat(5000) + "jobs" + &")".repeat(5000);
    assert!(validate(&deep).is_err());
    let deep_not = "not ".repeat(5000) + "jobs";
    assert!(validate(&deep_not).is_err());
}

/// `render_string(s, mapping={"env": ...})` (profile and decode-string scans) has
/// no root restriction: a non-`env` root is a missing key, which is not reported.
#[test]
fn scan_each_leaf_accepts_any_root_like_render_string() {
    let env = serde_json::Map::new();
    let v = json!({"a": "x{{nope.y}}", "b": ["{{env.M}}", "{{ }}"], "c": "{{other}}"});
    let f = scan_each_leaf(&v, &env);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].path, "b[0]");
    assert_eq!(
        f[0].kind,
        ScanKind::MissingEnv {
            key: "env.M".into()
        }
    );
    assert_eq!(f[1].path, "b[1]");
    assert!(
        matches!(&f[1].kind, ScanKind::Syntax { message } if message.ends_with("Empty token or nested braces are not allowed."))
    );

    // A top-level list gives `[i]` paths (the caller then builds `base.[i]`).
    let list = json!(["a", {"k": "b"}, 3]);
    let leaves = aetherflow_template::string_leaf_paths(&list);
    assert_eq!(
        leaves,
        vec![("[0]".to_string(), "a"), ("[1].k".to_string(), "b")]
    );
}
