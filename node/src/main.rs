#![forbid(unsafe_code)]
//! `veild`, the Veil node daemon: parses arguments, starts a [`veil_node::Node`], and
//! stops it cleanly on Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;
use veil_node::testnet::{Testnet, TestnetOptions};
use veil_node::{Node, Overrides};

/// veild: a Veil node. It keeps encrypted blocks, routes requests for them over
/// Noise-encrypted links to its peers, and serves a local HTTP API, a status page and a
/// gateway.
///
/// With no arguments it runs with the data directory $VEIL_DATA_DIR (else ~/.veil),
/// listening for peers on 127.0.0.1:7400 and serving the API on 127.0.0.1:7401. To accept
/// peers from other machines, pass --listen 0.0.0.0:7400 (and give them this node's
/// address with your public IP). The API stays on loopback; every API call needs
/// `Authorization: Bearer <token>` with the token from <data dir>/token.
///
/// Once ready, the node writes <data dir>/address (its peer address, as other nodes'
/// --peer takes it) and <data dir>/api (the API's base URL).
///
/// Every config file key has a flag of the same name (with dashes); flags win over the
/// file, and the file over the defaults. Logs go to stderr; RUST_LOG=info (or debug)
/// shows more.
#[derive(Debug, Parser)]
#[command(name = "veild", version, about, long_about, max_term_width = 100)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Overrides,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Start a whole local network: N real nodes on 127.0.0.1 in this process, linked as a
    /// seeded small world, each with its own data directory DIR/node-I, API and gateway.
    /// Put and get against any of them from another terminal, e.g.
    /// `veil --data-dir DIR/node-0 put FILE`. Ctrl-C stops them all.
    Testnet {
        /// How many nodes
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=500))]
        nodes: u16,
        /// Parent of the nodes' data directories [default: <default data dir>/testnet]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seed of the nodes' locations and links: the same seed gives the same network
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Testnet { nodes, dir, seed }) => run_testnet(nodes.into(), dir, seed),
        None => run(cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veild: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn run(overrides: Overrides) -> anyhow::Result<()> {
    let config = overrides.resolve()?;
    runtime()?.block_on(async {
        let node = Node::start(config).await?;
        eprintln!(
            "veild: ready at {} (API {})",
            node.address(),
            node.api_url()
        );
        wait_for_signal().await?;
        eprintln!("veild: shutting down");
        node.shutdown().await;
        Ok(())
    })
}

fn run_testnet(nodes: usize, dir: Option<PathBuf>, seed: u64) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => veil_node::config::default_data_dir()
            .context("no data directory: pass --dir, or set VEIL_DATA_DIR or HOME")?
            .join("testnet"),
    };
    let mut options = TestnetOptions::new(nodes, dir.clone(), seed);
    // Modest bounds: a testnet is for trying things out, eight of them share one disk.
    options.template.store_bytes = 256 << 20;
    options.template.cache_bytes = 64 << 20;
    runtime()?.block_on(async {
        eprintln!("veild: starting {nodes} nodes under {} ...", dir.display());
        let net = Testnet::start(options).await?;
        print_testnet(&net, &dir);
        wait_for_signal().await?;
        eprintln!("veild: stopping the testnet");
        net.shutdown().await;
        Ok(())
    })
}

/// How a newcomer reaches the testnet from another terminal.
fn print_testnet(net: &Testnet, dir: &std::path::Path) {
    let veil = veil_command();
    let last = net.nodes.len() - 1;
    println!(
        "Testnet up: {} nodes, {} links (seed {}), all on 127.0.0.1.",
        net.nodes.len(),
        net.edges.len(),
        net.options.seed
    );
    println!();
    println!("  node     peers  API / gateway                 data directory");
    for (i, node) in net.nodes.iter().enumerate() {
        println!(
            "  node-{i:<3} {:>5}  {:<29} {}",
            node.peers().len(),
            node.api_url(),
            node.data_dir().display()
        );
    }
    let d0 = dir.join("node-0");
    let dl = dir.join(format!("node-{last}"));
    println!();
    println!("In another terminal, publish through node-0 and fetch through node-{last}:");
    println!("  URI=$({veil} --data-dir {} put FILE)", d0.display());
    println!("  {veil} --data-dir {} get \"$URI\" -o OUT", dl.display());
    println!();
    println!(
        "Status page: {}/    gateway: {}/<URI>",
        net.nodes[0].api_url(),
        net.nodes[0].api_url()
    );
    println!(
        "Ctrl-C stops the network; its data stays in {}.",
        dir.display()
    );
}

/// The way to run `veil` here: the binary beside this one if it was built, else cargo.
fn veil_command() -> String {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("veil")))
        .filter(|p| p.exists());
    match sibling {
        Some(p) => p.display().to_string(),
        None => "cargo run -q --release --bin veil --".to_string(),
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
