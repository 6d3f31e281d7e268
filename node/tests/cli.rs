//! The `veild` binary's command line: `--help` teaches, a user's mistake is one line and
//! a non-zero exit. (Also makes cargo build `veild` for the process tests in veil-tests.)

use std::process::Command;

fn veild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veild"))
}

#[test]
fn help_explains_the_flags() {
    let out = veild().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--listen",
        "--api",
        "--peer",
        "--config",
        "--store-bytes",
        "--max-htl",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_mistake_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = veild()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--location", "2.0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("location"), "{err}");
}

#[test]
fn a_bad_config_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("veild.toml");
    std::fs::write(&file, "max_htl = 10\nlissen = \"127.0.0.1:1\"\n").unwrap();
    let out = veild()
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("lissen") && err.contains("veild.toml"),
        "{err}"
    );
}

#[test]
fn a_bad_peer_address_is_refused() {
    let out = veild().args(["--peer", "nokey"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--peer"), "{err}");
}

#[test]
fn a_peer_key_may_start_with_a_minus() {
    // Base64url keys can begin with '-'; such a peer must not be read as a flag. A bad
    // location makes veild stop right after parsing, so nothing is started.
    let key = "-".to_string() + &"A".repeat(42);
    let dir = tempfile::tempdir().unwrap();
    let out = veild()
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--peer",
            &format!("{key}@127.0.0.1:7400"),
            "--location",
            "7",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("location"), "{err}");
}
