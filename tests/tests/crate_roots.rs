//! Rules that hold for every crate root of the project, including the fuzz targets that
//! live outside the workspace (the workspace's `unsafe_code = "forbid"` lint does not
//! reach them): each one says `#![forbid(unsafe_code)]` itself.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    out.sort();
    out
}

/// Every library root, binary root and fuzz target of the project.
fn crate_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut roots = Vec::new();
    for member in ["proto", "node", "client", "sim", "tests"] {
        let src = root.join(member).join("src");
        roots.extend(
            ["lib.rs", "main.rs"]
                .iter()
                .map(|f| src.join(f))
                .filter(|p| p.exists()),
        );
        roots.extend(rust_files(&src.join("bin")));
    }
    roots.extend(rust_files(&root.join("fuzz").join("fuzz_targets")));
    roots
}

#[test]
fn every_crate_root_forbids_unsafe_code() {
    let roots = crate_roots();
    // The five libraries, three binaries and two fuzz targets at least.
    assert!(roots.len() >= 10, "{roots:?}");
    for path in roots {
        let text = std::fs::read_to_string(&path).unwrap();
        let forbids = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("#![forbid("))
            .any(|l| l.contains("unsafe_code"));
        assert!(forbids, "{} lacks #![forbid(unsafe_code)]", path.display());
    }
}

/// `veild` builds on the client library without the command line's crates: the client
/// keeps them behind its `cli` feature, and the node (and the fuzz targets) turn the
/// default features off. The gateway lives in the node, so the client has no HTTP server.
#[test]
fn the_node_takes_the_client_library_without_its_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let client = read("client/Cargo.toml");
    for dep in ["anyhow", "clap", "indicatif", "tracing-subscriber"] {
        let line = client
            .lines()
            .find(|l| l.starts_with(&format!("{dep} ")) || l.starts_with(&format!("{dep}.")))
            .unwrap_or_else(|| panic!("client/Cargo.toml lacks {dep}"));
        assert!(line.contains("optional = true"), "{line}");
    }
    assert!(
        !client.lines().any(|l| l.starts_with("axum")),
        "the client serves HTTP"
    );
    for manifest in ["Cargo.toml", "node/Cargo.toml", "fuzz/Cargo.toml"] {
        let text = read(manifest);
        let line = text
            .lines()
            .find(|l| l.starts_with("veil-client"))
            .unwrap_or_else(|| panic!("{manifest} lacks veil-client"));
        assert!(
            line.contains("default-features = false"),
            "{manifest}: {line}"
        );
    }
}

/// The crates `cargo tree` lists for one package's normal dependencies.
fn normal_dependencies(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

fn links(tree: &str, krate: &str) -> bool {
    tree.lines()
        .any(|l| l.split_whitespace().next() == Some(krate))
}

/// `veild` carries no HTTP client: the node needs the document format, not the client of
/// its own API (the `api` feature of veil-client, which the CLI turns on).
#[test]
fn veild_links_no_http_client_and_veil_does() {
    let node = normal_dependencies("veil-node");
    assert!(links(&node, "veil-client"), "the node decodes documents");
    assert!(!links(&node, "reqwest"), "veild links reqwest:\n{node}");
    // The check can see reqwest where it is: the CLI's client has it.
    let client = normal_dependencies("veil-client");
    assert!(links(&client, "reqwest"), "{client}");
}
