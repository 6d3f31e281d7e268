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
        /// Opennet instead of wiring: every node knows only node-0 as its seed and
        /// finds its peers by announcement and path folding; prints how the topology
        /// grows
        #[arg(long)]
        opennet: bool,
        /// Darknet instead: nodes link only to their friends (the seeded small world,
        /// over a hidden ring), start at random locations and swap them; prints how the
        /// mean link length shrinks
        #[arg(long, conflicts_with = "opennet")]
        darknet: bool,
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
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Some(Command::Testnet {
            nodes,
            dir,
            seed,
            opennet,
            darknet,
        }) => run_testnet(nodes.into(), dir, seed, opennet, darknet),
        None => run(cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veild: {}", veil_client::error_line(&*e));
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

fn run_testnet(
    nodes: usize,
    dir: Option<PathBuf>,
    seed: u64,
    opennet: bool,
    darknet: bool,
) -> anyhow::Result<()> {
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
    options.opennet = opennet;
    if opennet {
        options.template.max_peers = 8;
        options.template.min_peers = 6;
        options.link_timeout = std::time::Duration::from_secs(60);
    }
    options.darknet = darknet;
    if darknet {
        // Faster than a real node's 10 s, so convergence shows within minutes.
        options.template.swap_interval_ms = 2_000;
    }
    runtime()?.block_on(async {
        eprintln!("veild: starting {nodes} nodes under {} ...", dir.display());
        let growth = opennet.then(|| tokio::spawn(print_growth(dir.clone())));
        let net = Testnet::start(options).await?;
        if let Some(g) = growth {
            g.abort();
        }
        print_testnet(&net, &dir);
        if darknet {
            let start = net.mean_link_length();
            let watch = async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    eprintln!(
                        "veild: darknet mean link length {:.4} of the ring (dealt: {start:.4})",
                        net.mean_link_length()
                    );
                }
            };
            tokio::select! {
                r = wait_for_signal() => r?,
                () = watch => {}
            }
        } else {
            wait_for_signal().await?;
        }
        eprintln!("veild: stopping the testnet");
        net.shutdown().await;
        Ok(())
    })
}

/// While an opennet testnet grows, prints the peer counts of its nodes every second
/// (read from their status through the API files, as any script would).
async fn print_growth(dir: PathBuf) {
    let start = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let mut counts = Vec::new();
        for i in 0.. {
            let d = veil_node::testnet::node_dir(&dir, i);
            if !d.exists() {
                break;
            }
            counts.push(count_peers(&d).await.unwrap_or(0));
        }
        let linked = counts.iter().filter(|&&c| c > 0).count();
        eprintln!(
            "veild: {:>3} s  {linked}/{} nodes linked, peers per node {:?}",
            start.elapsed().as_secs(),
            counts.len(),
            counts
        );
    }
}

/// A node's routable peer count from its peers file list, via its API.
async fn count_peers(dir: &std::path::Path) -> Option<usize> {
    let api = std::fs::read_to_string(dir.join("api")).ok()?;
    let token = std::fs::read_to_string(dir.join("token")).ok()?;
    let url = format!("{}/api/v1/status", api.trim());
    let body = simple_get(&url, token.trim()).await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("peers")?.as_u64().map(|n| n as usize)
}

/// A minimal HTTP/1.1 GET on loopback (the daemon has no HTTP client of its own).
async fn simple_get(url: &str, token: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// How a newcomer reaches the testnet from another terminal.
fn print_testnet(net: &Testnet, dir: &std::path::Path) {
    let veil = veil_command();
    let last = net.nodes.len() - 1;
    if net.options.darknet {
        println!(
            "Darknet testnet up: {} nodes, {} friend links (seed {}), locations dealt at random, \
             each node swapping about every 2 s; mean link length {:.4} of the ring.",
            net.nodes.len(),
            net.edges.len(),
            net.options.seed,
            net.mean_link_length()
        );
    } else if net.options.opennet {
        let links: usize = net
            .nodes
            .iter()
            .map(|n| n.peers().iter().filter(|p| p.routable).count())
            .sum::<usize>()
            / 2;
        println!(
            "Opennet testnet up: {} nodes, about {links} links found by announcement, all on 127.0.0.1.",
            net.nodes.len()
        );
    } else {
        let links = net.edges.len();
        println!(
            "Testnet up: {} nodes, {links} link{} (seed {}), all on 127.0.0.1.",
            net.nodes.len(),
            if links == 1 { "" } else { "s" },
            net.options.seed
        );
    }
    println!();
    println!("  node     peers  API / gateway                 data directory");
    for (i, node) in net.nodes.iter().enumerate() {
        println!(
            "  node-{i:<3} {:>5}  {:<29} {}",
            // Routable peers, as the status reports them (a seed also holds short-lived
            // links to newcomers it announced for, which do not count).
            node.peers().iter().filter(|p| p.routable).count(),
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
