#![forbid(unsafe_code)]
//! `veild`, the Veil node daemon: parses arguments, starts a [`veil_node::Node`], and
//! stops it cleanly on Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
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
struct Cli {
    #[command(flatten)]
    run: Overrides,
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
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veild: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.run.resolve()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
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
