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
        "--latency-model",
        "--routing",
        "--latency-factor",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}

/// `run` reports fetch latency percentiles, and a latency-aware run (the default) the
/// same network routed greedily beside it; a bad latency model is one plain line.
#[test]
fn run_reports_fetch_latency_beside_greedy_routing() {
    let dir = tempfile::tempdir().unwrap();
    let o = sim()
        .args([
            "run",
            "--nodes",
            "400",
            "--requests",
            "2000",
            "--keys",
            "2000",
        ])
        .args(["--degree", "12", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(stdout.contains("greedy routing (same network"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["latency_model"], "internet");
    assert_eq!(s["routing"], "latency-aware");
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {s}"));
    assert!(f("fetch_latency_ms_p50") > 0.0);
    assert!(f("fetch_latency_ms_p95") >= f("fetch_latency_ms_p50"));
    // Quicker than greedy on the Internet model, at about the same success.
    assert!(
        f("fetch_latency_ms_p50") < 0.9 * f("greedy_fetch_latency_ms_p50"),
        "{s}"
    );
    assert!(f("success_rate") > f("greedy_success_rate") - 0.01, "{s}");

    // Greedy alone, on constant links: no comparison, every hop 2 × 20 ms.
    let o = sim()
        .args([
            "run",
            "--nodes",
            "200",
            "--requests",
            "200",
            "--routing",
            "greedy",
        ])
        .args(["--latency-model", "constant:20", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert!(s["greedy_success_rate"].is_null());
    assert_eq!(s["latency_factor"], 1.0);
    let p50 = s["fetch_latency_ms_p50"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && (p50 / 40.0 - (p50 / 40.0).round()).abs() < 1e-6,
        "{p50}"
    );

    for (flag, value) in [
        ("--latency-model", "warp"),
        ("--latency-model", "matrix:/nonexistent/veil-matrix.txt"),
        ("--latency-factor", "0.5"),
    ] {
        let o = sim()
            .args([
                "run",
                "--nodes",
                "50",
                "--requests",
                "10",
                flag,
                value,
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `churn` prints both tables and writes its files; one replica without healing loses
/// more after the waves than with it.
#[test]
fn churn_writes_the_placement_and_recovery_tables() {
    let dir = tempfile::tempdir().unwrap();
    let o = sim()
        .args([
            "churn",
            "--nodes",
            "300",
            "--requests",
            "3000",
            "--keys",
            "3000",
        ])
        .args(["--degree", "8", "--wave", "0.2", "--sizes", "500"])
        .args([
            "--placement-keys",
            "5000",
            "--placement-events",
            "100",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        stdout.contains("keys-changed/join") && stdout.contains("after-joins"),
        "{stdout}"
    );
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("churn.json")).unwrap()).unwrap();
    assert_eq!(all["placement"].as_array().unwrap().len(), 2);
    let rec = all["recovery"].as_array().unwrap();
    assert_eq!(rec.len(), 4);
    let after = |i: usize| rec[i]["after_joins"].as_f64().unwrap();
    assert!(after(1) > after(0), "{all}");
    assert!(std::fs::read_to_string(dir.path().join("churn.svg"))
        .unwrap()
        .starts_with("<svg"));
    let csv = std::fs::read_to_string(dir.path().join("churn.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 20);
}
