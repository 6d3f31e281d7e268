//! The command line: the documented interface and its files.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil-sim"))
}

#[test]
fn run_writes_summary_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = sim()
        .args(["run", "--nodes", "150", "--requests", "300", "--seed", "9"])
        .args(["--topology", "small-world", "--fail-fraction", "0.1"])
        .args(["--htl-policy", "always", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        stdout.contains("success") && stdout.contains("events"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    for field in [
        "nodes",
        "requests",
        "success_rate",
        "mean_hops",
        "p95_hops",
        "guess_precision",
        "guess_recall",
        "events_per_sec",
        "wall_seconds",
    ] {
        assert!(summary.get(field).is_some(), "missing {field}");
    }
    assert_eq!(summary["nodes"], 150);
    let csv = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301);
    let svg = std::fs::read_to_string(out.join("hops.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
}

#[test]
fn sweep_writes_one_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let o = sim()
        .args(["sweep", "--sizes", "50,100", "--requests", "100", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sweep.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(dir.path().join("sweep.svg").exists());
    assert!(dir.path().join("n100/summary.json").exists());
}

#[test]
fn mistakes_get_one_line_and_a_failure_code() {
    let dir = tempfile::tempdir().unwrap();
    let o = sim()
        .args([
            "run",
            "--nodes",
            "100",
            "--requests",
            "10",
            "--fail-fraction",
            "2",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--fail-fraction"));
}

#[test]
fn help_documents_every_parameter() {
    let o = sim().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in [
        "--nodes",
        "--requests",
        "--seed",
        "--topology",
        "--fail-fraction",
        "--htl-policy",
        "--out",
        "--churn",
        "--popularity",
        "--degree",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}
