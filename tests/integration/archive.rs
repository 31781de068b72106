//! The `zip` and `unzip` steps: round trips, AES and ZipCrypto passwords, globs,
//! containment, Zip Slip, layouts, deterministic archives.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{header, Outcome, Test};

/// A test whose job `j` of flow `id` runs `steps` (YAML list items indented by 6), with
/// files pre-made in the run's artifacts dir (`r1`).
fn setup(id: &str, steps: &str, files: &[(&str, &[u8])]) -> Test {
    let t = Test::new().flow(&(header(id) + "jobs:\n  - id: j\n    steps:\n" + steps));
    for (rel, data) in files {
        let p = art(&t, id).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    t
}

fn art(t: &Test, id: &str) -> PathBuf {
    t.path(&format!("work/{id}/j/r1/artifacts"))
}

fn run(t: &Test) -> Outcome {
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
}

fn end(out: &Outcome, step: &str) -> Value {
    out.named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == step)
        .unwrap_or_else(|| panic!("no step_end for {step}: {}", out.stderr))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn zip_then_unzip_round_trip_reference_layout() {
    // The reference test: items ["in/*.txt"], src_dir "." → unzip with src_dir "." puts the
    // files at <dest>/out/in/a.txt.
    let steps = "      - {id: z, type: zip, inputs: {dest_path: out/test.zip, items: [\"in/*.txt\"], src_dir: \".\"}}\n      - {id: u, type: unzip, inputs: {archives: out/test.zip, dest_dir: dest, src_dir: \".\"}}\n      - {id: p, type: unzip, inputs: {archives: [out/test.zip], dest_dir: priv, private_zip_folder: true}}\n";
    let t = setup(
        "arch1",
        steps,
        &[
            ("in/a.txt", b"alpha\n"),
            ("in/b.txt", b"beta\n"),
            ("in/c.csv", b"x\n"),
        ],
    );
    let out = run(&t);
    out.status(0);
    let a = art(&t, "arch1");
    assert_eq!(read(&a.join("dest/out/in/a.txt")), "alpha\n");
    assert_eq!(read(&a.join("dest/out/in/b.txt")), "beta\n");
    assert!(!a.join("dest/out/in/c.csv").exists());
    assert_eq!(read(&a.join("priv/out/test/in/a.txt")), "alpha\n");
    assert!(!a.join("out/test.zip.tmp").exists());
    let z = end(&out, "z");
    assert_eq!(z["status"], "SUCCESS", "{z}");
    // The OS unzip agrees with the archive's contents and integrity.
    let list = Command::new("unzip")
        .arg("-Z1")
        .arg(a.join("out/test.zip"))
        .output();
    if let Ok(list) = list {
        assert_eq!(
            String::from_utf8_lossy(&list.stdout),
            "in/a.txt\nin/b.txt\n"
        );
    }
}

#[test]
fn password_round_trip_is_aes_and_a_wrong_password_fails() {
    let steps = "      - {id: z, type: zip, inputs: {dest_path: out/secret.zip, items: [data], password: s3cret}}\n      - {id: u, type: unzip, inputs: {archives: out/secret.zip, dest_dir: dest, password: s3cret}}\n";
    let t = setup("arch2", steps, &[("data/secret.txt", b"top secret\n")]);
    run(&t).status(0);
    let a = art(&t, "arch2");
    assert_eq!(read(&a.join("dest/out/data/secret.txt")), "top secret\n");
    // AES (WinZip AE-x: compression method 99 in the local header).
    let bytes = std::fs::read(a.join("out/secret.zip")).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 99);
    assert!(!String::from_utf8_lossy(&bytes).contains("top secret"));

    // Wrong password, and no password, on the same archive.
    for (id, extra, want) in [
        ("bad", ", password: nope", "wrong password for archive"),
        (
            "none",
            "",
            "is encrypted (entry data/secret.txt): set inputs.password",
        ),
    ] {
        t.write(
            "flow.yaml",
            &(header("arch2")
                + &format!("jobs:\n  - id: j\n    steps:\n      - {{id: {id}, type: unzip, inputs: {{archives: out/secret.zip, dest_dir: d2{extra}}}}}\n")),
        );
        let out = run(&t);
        out.status(1);
        let e = end(&out, id);
        let err = e["error"].as_str().unwrap();
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&format!("unzip step {id}")), "{err}");
    }
}

#[test]
fn an_os_zipcrypto_archive_opens_with_its_password() {
    if Command::new("zip").arg("-v").output().is_err() {
        eprintln!("\n*** SKIPPED: the OS `zip` command is not installed ***\n");
        return;
    }
    let t = setup(
        "arch3",
        "      - {id: u, type: unzip, inputs: {archives: legacy.zip, dest_dir: dest, password: pw123}}\n",
        &[("src/hello.txt", b"hello zipcrypto\n")],
    );
    let a = art(&t, "arch3");
    let st = Command::new("zip")
        .current_dir(a.join("src"))
        .args(["-q", "-P", "pw123", "../legacy.zip", "hello.txt"])
        .status()
        .unwrap();
    assert!(st.success());
    run(&t).status(0);
    assert_eq!(read(&a.join("dest/hello.txt")), "hello zipcrypto\n");

    t.write(
        "flow.yaml",
        &(header("arch3")
            + "jobs:\n  - id: j\n    steps:\n      - {id: w, type: unzip, inputs: {archives: legacy.zip, dest_dir: d2, password: wrong}}\n"),
    );
    let out = run(&t);
    out.status(1);
    let err = end(&out, "w")["error"].as_str().unwrap().to_string();
    assert!(err.contains("wrong password for archive"), "{err}");
    assert!(!a.join("d2/hello.txt").exists());
}

#[test]
fn same_inputs_give_byte_identical_archives() {
    let steps = "      - {id: z1, type: zip, inputs: {dest_path: one.zip, items: [in, {glob: \"extra/*.md\"}]}}\n      - {id: z2, type: zip, inputs: {dest_path: two.zip, items: [{path: extra/r.md}, in]}}\n";
    let t = setup(
        "arch4",
        steps,
        &[
            ("in/b/2.txt", b"2"),
            ("in/a/1.txt", b"1"),
            ("extra/r.md", b"# r"),
        ],
    );
    let a = art(&t, "arch4");
    // Different mtimes must not matter.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(a.join("in/a/1.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = run(&t);
    out.status(0);
    let one = std::fs::read(a.join("one.zip")).unwrap();
    let two = std::fs::read(a.join("two.zip")).unwrap();
    assert_eq!(one, two);
    assert_eq!(end(&out, "z1")["status"], "SUCCESS");
    // A fresh run on fresh copies (new mtimes, new workspace): the same bytes.
    let a2 = t.path("work/arch4/j/r2/artifacts");
    for rel in ["in/b/2.txt", "in/a/1.txt", "extra/r.md"] {
        std::fs::create_dir_all(a2.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(a.join(rel), a2.join(rel)).unwrap();
    }
    t.run_args(&["run", "flow.yaml", "--run-id", "r2"])
        .status(0);
    assert_eq!(std::fs::read(a2.join("one.zip")).unwrap(), one);
    let list = Command::new("unzip")
        .arg("-Z1")
        .arg(a.join("two.zip"))
        .output();
    if let Ok(list) = list {
        assert_eq!(
            String::from_utf8_lossy(&list.stdout),
            "extra/r.md\nin/a/1.txt\nin/b/2.txt\n"
        );
    }
}

#[test]
fn items_outside_src_dir_and_no_files() {
    let t = setup(
        "arch5",
        "      - {id: z, type: zip, inputs: {dest_path: o.zip, items: [in/a.txt, other/b.txt], src_dir: in}}\n",
        &[("in/a.txt", b"a"), ("other/b.txt", b"b")],
    );
    let out = run(&t);
    out.status(1);
    let err = end(&out, "z")["error"].as_str().unwrap().to_string();
    let a = art(&t, "arch5");
    assert!(
        err.contains(&format!(
            "zip input '{}' is outside base_dir '{}'",
            a.join("other/b.txt").display(),
            a.join("in").display()
        )),
        "{err}"
    );

    t.write(
        "flow.yaml",
        &(header("arch5")
            + "jobs:\n  - id: j\n    steps:\n      - {id: n, type: zip, inputs: {dest_path: o.zip, items: [\"nothing/*.txt\"]}}\n      - {id: after, type: check_items, inputs: {items: [1]}}\n"),
    );
    let out = run(&t);
    out.status(0);
    let n = end(&out, "n");
    assert_eq!(n["status"], "SKIPPED", "{n}");
    let show = t.run_args(&["runs", "show", "r1", "--flow-yaml", "flow.yaml"]);
    assert!(show.stdout.contains("no_files"), "{}", show.stdout);

    t.write(
        "flow.yaml",
        &(header("arch5")
            + "jobs:\n  - id: j\n    steps:\n      - {id: bad, type: zip, inputs: {dest_path: o.zip, items: in/a.txt}}\n"),
    );
    let out = run(&t);
    out.status(1);
    assert_eq!(end(&out, "bad")["error"], "zip inputs.items must be a list");
}

/// A stored (uncompressed) zip with one entry named `name`, written by hand.
fn hand_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let mut z = Vec::new();
    let n = name.as_bytes();
    z.extend_from_slice(&0x04034b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(n.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(n);
    z.extend_from_slice(data);
    let cd = z.len();
    z.extend_from_slice(&0x02014b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(n.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(n);
    let cd_len = z.len() - cd;
    z.extend_from_slice(&0x06054b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in data {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn zip_slip_archives_are_refused() {
    let evil = hand_zip("../../escaped.txt", b"pwned");
    let t = setup(
        "arch6",
        "      - {id: u, type: unzip, inputs: {archives: evil.zip, dest_dir: dest}}\n",
        &[("evil.zip", &evil)],
    );
    let out = run(&t);
    out.status(1);
    let err = end(&out, "u")["error"].as_str().unwrap().to_string();
    assert!(err.contains("escapes the destination"), "{err}");
    assert!(err.contains("../../escaped.txt"), "{err}");
    let a = art(&t, "arch6");
    assert!(!a.join("escaped.txt").exists());
    assert!(!a.join("../escaped.txt").exists());

    // An absolute name is taken relative to the destination (its leading `/` dropped, as
    // Python's zipfile does): it lands inside, never at the absolute path.
    let abs = hand_zip("/tmp/af-abs-escape.txt", b"inside");
    std::fs::write(a.join("evil.zip"), abs).unwrap();
    run(&t).status(0);
    assert_eq!(read(&a.join("dest/tmp/af-abs-escape.txt")), "inside");
    assert!(!Path::new("/tmp/af-abs-escape.txt").exists());
}

#[test]
fn unzip_members_overwrite_and_outside_src_dir() {
    let steps = "      - {id: z, type: zip, inputs: {dest_path: pack/p.zip, items: [a.txt, b.txt], compression: stored}}\n      - {id: u, type: unzip, inputs: {archives: pack/p.zip, dest_dir: out, src_dir: elsewhere, members: [b.txt], overwrite: false}}\n";
    let t = setup(
        "arch7",
        steps,
        &[("a.txt", b"A"), ("b.txt", b"B"), ("elsewhere/.keep", b"")],
    );
    let a = art(&t, "arch7");
    // An existing target is kept with overwrite: false.
    std::fs::create_dir_all(a.join("out/p.zip")).unwrap();
    std::fs::write(a.join("out/p.zip/b.txt"), "old").unwrap();
    let out = run(&t);
    out.status(0);
    // Not under src_dir → dest/<archive file name>/.
    assert_eq!(read(&a.join("out/p.zip/b.txt")), "old");
    assert!(!a.join("out/p.zip/a.txt").exists());
    // compression: stored → method 0.
    let bytes = std::fs::read(a.join("pack/p.zip")).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 0);

    t.write(
        "flow.yaml",
        &(header("arch7")
            + "jobs:\n  - id: j\n    steps:\n      - {id: m, type: unzip, inputs: {archives: pack/p.zip, dest_dir: out, members: [zzz.txt]}}\n"),
    );
    let out = run(&t);
    out.status(1);
    assert!(end(&out, "m")["error"]
        .as_str()
        .unwrap()
        .contains("There is no item named 'zzz.txt' in the archive"));
}
