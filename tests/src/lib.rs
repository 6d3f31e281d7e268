#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]
//! `veil-tests`: the testnet harness. It starts real nodes on 127.0.0.1 — in-process
//! ([`Testnet`]) or as `veild` processes ([`VeildProcess`]) — with temporary data
//! directories, connects them in a [`Topology`], waits for the links on events (never by
//! sleeping), and gives each test an authenticated API client ([`Api`]).
//!
//! Data directories are deleted when a testnet is dropped, except when the thread is
//! panicking (a failed test): then they are kept and their paths printed, for a look at
//! the store and files.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use veil_node::{Config, Node, NodeHandle};
use veil_proto::{Block, PeerAddress, RoutingKey};

/// How long harness waits (links up, files written) may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Which nodes dial which.
#[derive(Debug, Clone)]
pub enum Topology {
    /// No links.
    None,
    /// 0-1-2-…-(n-1): node i dials node i+1.
    Line,
    /// A line closed into a circle.
    Ring,
    /// Explicit edges `(a, b)`: node a dials node b.
    Edges(Vec<(usize, usize)>),
}

impl Topology {
    /// The edges for `n` nodes.
    pub fn edges(&self, n: usize) -> Vec<(usize, usize)> {
        match self {
            Topology::None => Vec::new(),
            Topology::Line => (1..n).map(|i| (i - 1, i)).collect(),
            Topology::Ring if n < 3 => Topology::Line.edges(n),
            Topology::Ring => (0..n).map(|i| (i, (i + 1) % n)).collect(),
            Topology::Edges(e) => e.clone(),
        }
    }
}

/// A config for a test node: loopback, ports from the OS, small bounds, short timers.
pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        api: "127.0.0.1:0".parse().expect("addr"),
        store_bytes: 64 << 20,
        cache_bytes: 64 << 20,
        hop_timeout_ms: 1_000,
        request_timeout_ms: 15_000,
        keepalive_ms: 500,
        dead_after_ms: 3_000,
        handshake_timeout_ms: 2_000,
        redial_min_ms: 50,
        redial_max_ms: 1_000,
        // Wired test topologies stay as wired; opennet tests turn it on.
        opennet: false,
        ..Config::default()
    }
}

/// A temporary data directory that survives a failing test.
#[derive(Debug)]
pub struct DataDir(Option<tempfile::TempDir>);

impl DataDir {
    /// A fresh directory.
    pub fn new() -> anyhow::Result<DataDir> {
        Ok(DataDir(Some(
            tempfile::Builder::new().prefix("veil-test-").tempdir()?,
        )))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("dir").path()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!("test failed; data directory kept at {}", d.keep().display());
            }
        }
    }
}

/// An authenticated client of one node's HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The API token.
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for `base` with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        Api {
            base: base.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// A client for the node whose data directory is `dir`, from its `api` and `token`
    /// files.
    pub fn from_data_dir(dir: &Path) -> anyhow::Result<Api> {
        let base = std::fs::read_to_string(dir.join("api")).context("reading api file")?;
        let token = std::fs::read_to_string(dir.join("token")).context("reading token file")?;
        Ok(Api::new(base.trim(), token.trim()))
    }

    /// A request with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
    }

    /// The raw reqwest client (for requests without the token).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn block_path(key: &RoutingKey, htl: Option<u8>) -> String {
        match htl {
            Some(h) => format!("/api/v1/blocks/{key}?htl={h}"),
            None => format!("/api/v1/blocks/{key}"),
        }
    }

    /// `PUT /api/v1/blocks/{key}`; fails unless 200.
    pub async fn put_block(
        &self,
        key: &RoutingKey,
        block: &Block,
        htl: Option<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .request(reqwest::Method::PUT, &Self::block_path(key, htl))
            .body(block.bytes().clone())
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        if !status.is_success() {
            bail!("put failed: {status} {body}");
        }
        Ok(body)
    }

    /// `GET /api/v1/blocks/{key}`: the response as is.
    pub async fn get_block_response(
        &self,
        key: &RoutingKey,
        htl: Option<u8>,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .request(reqwest::Method::GET, &Self::block_path(key, htl))
            .send()
            .await?)
    }

    /// `GET /api/v1/blocks/{key}`; fails unless 200 and the block matches the key.
    pub async fn get_block(&self, key: &RoutingKey, htl: Option<u8>) -> anyhow::Result<Block> {
        let r = self.get_block_response(key, htl).await?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "get failed: {status} {}",
                r.text().await.unwrap_or_default()
            );
        }
        let block = Block::new(r.bytes().await?)?;
        block.verify(key)?;
        Ok(block)
    }

    /// `GET /api/v1/status` as JSON.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        let r = self
            .request(reqwest::Method::GET, "/api/v1/status")
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!("status failed: {status}");
        }
        Ok(r.json().await?)
    }

    /// `GET /api/v1/peers`: one JSON object per peer.
    pub async fn peers(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let r = self
            .request(reqwest::Method::GET, "/api/v1/peers")
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!("peers failed: {status}");
        }
        let list: serde_json::Value = r.json().await?;
        match list {
            serde_json::Value::Array(v) => Ok(v),
            other => bail!("peers is not a list: {other}"),
        }
    }

    /// The keys of the routable peers, in the order the node lists them.
    pub async fn routable_peer_keys(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .peers()
            .await?
            .iter()
            .filter(|p| p["routable"].as_bool() == Some(true))
            .filter_map(|p| p["key"].as_str().map(str::to_string))
            .collect())
    }

    /// One request counter from the status, e.g. `"served_from_cache"`.
    pub async fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let s = self.status().await?;
        s["requests"][name]
            .as_u64()
            .with_context(|| format!("no counter {name} in {s}"))
    }

    /// One value from `/metrics`, by its name without the `veil_` prefix, e.g.
    /// `"api_connections_evicted_total"`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let r = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("metrics: HTTP {}", r.status());
        }
        let text = r.text().await?;
        let prefix = format!("veil_{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .with_context(|| format!("no metric {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("metric {name}"))
    }
}

/// One in-process node of a [`Testnet`].
#[derive(Debug)]
pub struct TestNode {
    /// The node.
    pub handle: NodeHandle,
    /// Its API client.
    pub api: Api,
    /// Its data directory.
    pub dir: DataDir,
}

/// N in-process nodes on loopback.
#[derive(Debug)]
pub struct Testnet {
    /// The nodes, in the order of the topology's indices.
    pub nodes: Vec<TestNode>,
}

impl Testnet {
    /// Starts `n` nodes with [`test_config`], links them as `topology` says and waits
    /// until every link is up.
    pub async fn start(n: usize, topology: Topology) -> anyhow::Result<Testnet> {
        Testnet::start_with(n, topology, |_, _| {}).await
    }

    /// Like [`Testnet::start`], with a hook to adjust node `i`'s config.
    pub async fn start_with(
        n: usize,
        topology: Topology,
        adjust: impl Fn(usize, &mut Config),
    ) -> anyhow::Result<Testnet> {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = DataDir::new()?;
            let mut config = test_config(dir.path());
            adjust(i, &mut config);
            let handle = Node::start(config)
                .await
                .with_context(|| format!("starting node {i}"))?;
            let api = Api::new(handle.api_url(), handle.token());
            nodes.push(TestNode { handle, api, dir });
        }
        let net = Testnet { nodes };
        net.link(&topology.edges(n)).await?;
        Ok(net)
    }

    /// Adds links (a dials b) and waits until each is up at both ends.
    pub async fn link(&self, edges: &[(usize, usize)]) -> anyhow::Result<()> {
        for &(a, b) in edges {
            self.nodes[a].handle.connect(self.nodes[b].handle.address());
        }
        for &(a, b) in edges {
            let (ka, kb) = (self.nodes[a].handle.key(), self.nodes[b].handle.key());
            wait_for_peer(&self.nodes[a].handle, kb, true).await?;
            wait_for_peer(&self.nodes[b].handle, ka, true).await?;
        }
        Ok(())
    }

    /// Node `i`'s API client.
    pub fn api(&self, i: usize) -> &Api {
        &self.nodes[i].api
    }

    /// Node `i`'s handle.
    pub fn node(&self, i: usize) -> &NodeHandle {
        &self.nodes[i].handle
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in &self.nodes {
            n.handle.shutdown().await;
        }
    }
}

/// Waits until `node` is (or, with `connected` false, is no longer) linked to `key`.
pub async fn wait_for_peer(
    node: &NodeHandle,
    key: veil_proto::NodeKey,
    connected: bool,
) -> anyhow::Result<()> {
    let mut w = node.watch_peers();
    tokio::time::timeout(
        WAIT,
        w.wait_for(|l| l.iter().any(|p| p.key == key) == connected),
    )
    .await
    .context("timed out waiting for a link")?
    .context("node stopped")?;
    Ok(())
}

/// Polls `done` every 100 ms until it holds, panicking with `what` after `limit`. For
/// processes, which offer no event channel to await.
pub async fn poll_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A random block of `len` payload bytes (seeded) and its routing key.
pub fn random_block(seed: u64, len: usize) -> (RoutingKey, Block) {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut payload = vec![0u8; len];
    rng.fill_bytes(&mut payload);
    let (block, keys) = veil_proto::block::encode(&payload).expect("payload fits a block");
    (keys.routing, block)
}

/// The `veild` binary beside the running test binary (`target/<profile>/veild`).
///
/// Under `cargo test` (which sets `$CARGO`) it is first brought up to date with
/// `cargo build -p veil-node --bin veild` (a fraction of a second when nothing changed),
/// so a process test never runs a stale daemon; elsewhere the binary must exist.
pub fn veild_path() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| locate_binary("veil-node", "veild").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Runs `veil --data-dir DIR args...`; stdout on success, stderr on failure.
pub fn veil(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(veil_path().expect("veil binary"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run veil");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `veil --data-dir DIR args...` with `RUST_LOG` unset: (exit status 0, stdout,
/// stderr), both trimmed.
pub fn veil_output(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(veil_path().expect("veil binary"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run veil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// The `veil` client binary, brought up to date like [`veild_path`].
pub fn veil_path() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| locate_binary("veil-client", "veil").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn locate_binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .context("no directory for the test binary")?;
    let path = profile_dir.join(name);
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", name]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .with_context(|| format!("running cargo build for {name}"))?;
        if !status.success() {
            bail!("cargo build of {name} failed");
        }
    }
    if !path.exists() {
        bail!("{name} not found at {}", path.display());
    }
    Ok(path)
}

/// `n` distinct loopback ports that were free a moment ago (bound, then released): for
/// processes that must be told each other's addresses before they start. They are drawn
/// below the kernel's ephemeral range (which starts at 32768), so a port that another
/// test's node gets from the OS (`127.0.0.1:0`) cannot take one in between.
pub fn free_loopback_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut held = Vec::new();
    for _ in 0..n * 100 {
        if held.len() == n {
            break;
        }
        let port: u16 = rng.gen_range(20_000..32_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            if !held.iter().any(|(p, _)| *p == port) {
                held.push((port, l));
            }
        }
    }
    if held.len() < n {
        bail!("could not find {n} free loopback ports");
    }
    Ok(held.into_iter().map(|(p, _)| p).collect())
}

/// A node running as a `veild` process.
#[derive(Debug)]
pub struct VeildProcess {
    child: Child,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its API client (from the `api` and `token` files).
    pub api: Api,
    /// Its peer address (from the `address` file).
    pub address: PeerAddress,
}

impl VeildProcess {
    /// Starts `veild --data-dir dir` with loopback ports from the OS plus `args`, and
    /// waits until it has written its `address` and `api` files.
    pub async fn spawn(dir: &Path, args: &[&str]) -> anyhow::Result<VeildProcess> {
        VeildProcess::spawn_listening(dir, 0, args).await
    }

    /// [`VeildProcess::spawn`] with the peer port fixed (0: from the OS), for networks
    /// whose nodes must know each other's addresses before any starts (a darknet).
    pub async fn spawn_listening(
        dir: &Path,
        port: u16,
        args: &[&str],
    ) -> anyhow::Result<VeildProcess> {
        // Files from an earlier run would make us talk to a dead process.
        for f in ["api", "address"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let mut child = Command::new(veild_path()?)
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--api", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning veild")?;
        // The files appear atomically once the node is ready; the process has no other
        // channel to tell us, so poll the files (bounded, with a short period).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let (Ok(a), Ok(_)) = (
                std::fs::read_to_string(dir.join("address")),
                std::fs::read_to_string(dir.join("api")),
            ) {
                let api = Api::from_data_dir(dir)?;
                return Ok(VeildProcess {
                    child,
                    dir: dir.to_path_buf(),
                    api,
                    address: a.trim().parse()?,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!("veild exited early: {status}");
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("veild did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        // std's Child::kill sends SIGKILL on Unix: no chance to clean up.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits for a clean exit, returning the exit status.
    pub fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for VeildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records one benchmark figure for `bench/run`: a line `name<TAB>value<TAB>unit` appended
/// to the file named by `VEIL_BENCH_OUT`, when it is set (run by hand, a benchmark only
/// prints).
pub fn bench_record(name: &str, value: f64, unit: &str) {
    let Some(path) = std::env::var_os("VEIL_BENCH_OUT") else {
        return;
    };
    use std::io::Write;
    let line = format!("{name}\t{value}\t{unit}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("cannot record {name} in {}: {e}", path.to_string_lossy());
    }
}

/// The process's resident set: (current, peak) in bytes, from `/proc` (Linux; `None`
/// elsewhere or once the process is gone).
pub fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
