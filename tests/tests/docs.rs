//! Docs that cannot drift: the README's quick start runs as written against a testnet,
//! and every config key, command and summary field the docs name exists in the code (and
//! the other way round).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use veil_tests::{veil_path, veild_path, Testnet, Topology};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of section `heading` (to the next heading of the same or a higher level).
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let level = heading.split(' ').next().expect("hashes").len();
    let body = &doc[start + heading.len() + 2..];
    let end = body
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = body[i + 1..].chars().take_while(|c| *c == '#').count();
            hashes <= level
        })
        .map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// The first fenced code block of `text`.
fn first_block(text: &str) -> &str {
    let start = text.find("```").expect("a fenced block");
    let body = &text[start..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    &body[..body.find("```").expect("closing fence")]
}

/// The README's quick start, run line for line against a testnet: its `veil` is this
/// build's, its `~/.veil/testnet/node-N` the testnet's data directories; only `cargo
/// build` is left out (the harness built `veil` already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_runs_as_written() {
    let readme = read("README.md");
    let start = readme
        .find("\n## Quick start: publish and fetch\n")
        .expect("quick start");
    let block = first_block(&readme[start..]);
    let net = Testnet::start(8, Topology::Ring).await.expect("testnet");
    let veil = veil_path().expect("veil");
    let mut script = String::from("set -euo pipefail\n");
    for line in block.lines() {
        if line.trim_start().starts_with("cargo build") {
            continue;
        }
        let mut line = line.replace("target/release/veil", veil.to_str().expect("utf-8"));
        for i in (0..8).rev() {
            line = line.replace(
                &format!("~/.veil/testnet/node-{i}"),
                net.nodes[i].dir.path().to_str().expect("utf-8"),
            );
        }
        script.push_str(&line);
        script.push('\n');
    }
    // It publishes README.md and docs/ from the working directory.
    let work = tempfile::tempdir().expect("dir");
    std::fs::copy(root().join("README.md"), work.path().join("README.md")).expect("copy");
    let docs = work.path().join("docs");
    std::fs::create_dir(&docs).expect("mkdir");
    for e in std::fs::read_dir(root().join("docs")).expect("docs") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), docs.join(e.file_name())).expect("copy");
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("identical"), "{stdout}");
    assert!(stdout.contains("veil:CHK@"), "{stdout}");
    // The search from node 5 lists README.md under its word.
    assert!(
        stdout.lines().any(|l| l.starts_with("README.md ")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(work.path().join("docs-copy/formats.md")).expect("restored"),
        std::fs::read(root().join("docs/formats.md")).expect("original")
    );
    net.shutdown().await;
}

/// The config keys of the README's table.
fn readme_config_keys() -> BTreeSet<String> {
    let readme = read("README.md");
    let table = section(&readme, "## Config reference");
    let mut keys = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).expect("cell");
        for part in cell.split('/') {
            keys.insert(part.trim().trim_matches('`').to_string());
        }
    }
    keys
}

#[test]
fn the_config_reference_names_every_key_and_flag() {
    let documented = readme_config_keys();
    let config = serde_json::to_value(veil_node::Config::default()).expect("json");
    let actual: BTreeSet<String> = config
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, actual, "README config table vs Config");
    // Every key has a flag of the same name with dashes; the lists take one value per
    // flag, in the singular, as the README says.
    let help = Command::new(veild_path().expect("veild"))
        .arg("--help")
        .output()
        .expect("veild --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for key in &actual {
        let flag = match key.as_str() {
            "peers" => "--peer".to_string(),
            "seed_nodes" => "--seed-node".to_string(),
            "keepalive_uris" => "--keepalive-uri".to_string(),
            k => format!("--{}", k.replace('_', "-")),
        };
        assert!(
            help.contains(&flag),
            "veild --help lacks {flag} (config key {key})"
        );
    }
    let readme = read("README.md");
    for exception in ["--peer", "--seed-node", "--keepalive-uri"] {
        assert!(
            readme.contains(exception),
            "README does not name {exception}"
        );
    }
}

#[test]
fn the_cli_reference_names_every_command() {
    let readme = read("README.md");
    let table = section(&readme, "### `veil` (client)");
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `veil "))
        .map(|l| l.split([' ', '`']).next().expect("word").to_string())
        .collect();
    let help = Command::new(veil_path().expect("veil"))
        .arg("--help")
        .output()
        .expect("veil --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let commands: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented by two; its wrapped help, further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert_eq!(documented, commands, "README's veil table vs veil --help");
}

#[test]
fn the_summary_fields_in_the_sim_docs_are_the_summary() {
    let doc = read("docs/sim.md");
    let start = doc.find("`DIR/summary.json`:").expect("summary list");
    let list = &doc[start..start + doc[start..].find(";\n").expect("end of list")];
    let documented: BTreeSet<String> = list
        .split('`')
        .skip(3)
        .step_by(2)
        .map(str::to_string)
        .collect();
    let mut p = veil_sim::params::Params::new(20, 10, 1);
    p.degree = 4;
    let summary = serde_json::to_value(veil_sim::run(&p).expect("run").summary).expect("json");
    let actual: BTreeSet<String> = summary
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        documented, actual,
        "docs/sim.md summary.json list vs Summary"
    );
}
