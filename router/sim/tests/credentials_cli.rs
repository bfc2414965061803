//! `centralino hash-password` reads the password from stdin and prints an argon2id PHC
//! string that verifies it; `centralino new-token` prints a token and its digest.

use std::io::Write as _;
use std::process::{Command, Stdio};

use centralino_base::credentials::{check_password_hash, token_matches, verify_password};

fn run(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_centralino"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("centralino runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("centralino exits")
}

#[test]
fn hash_password_reads_stdin_and_prints_a_verifying_phc_string() {
    let out = run(&["hash-password"], "s3cret pass\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phc = String::from_utf8(out.stdout).expect("utf-8");
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    check_password_hash(phc).expect("a PHC string");
    assert!(
        verify_password(phc, "s3cret pass"),
        "the newline is not part of it"
    );
    assert!(!verify_password(phc, "s3cret pass\n"));

    // The explicit flag works the same; CRLF is stripped too.
    let out = run(&["hash-password", "--password-stdin"], "other\r\n");
    assert!(out.status.success());
    assert!(verify_password(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "other"
    ));
}

#[test]
fn hash_password_refuses_an_empty_password_and_takes_none_from_argv() {
    let out = run(&["hash-password"], "\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
    let out = run(&["hash-password", "s3cret"], "");
    assert!(!out.status.success(), "a password argument is refused");
}

#[test]
fn new_token_prints_a_token_and_its_digest() {
    let out = run(&["new-token"], "");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("cnt_"));
    assert!(lines[1].starts_with("sha256:"));
    assert!(token_matches(lines[1], lines[0]));
    let again = run(&["new-token"], "");
    assert_ne!(String::from_utf8_lossy(&again.stdout), text, "random");
}
