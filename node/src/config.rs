//! The node's configuration: a TOML file with documented defaults, every key of which a
//! command-line flag can override ([`Overrides`]).
//!
//! Precedence, lowest first: built-in defaults, the config file (`--config FILE`, else
//! `<data dir>/veild.toml` if it exists), flags.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use veil_proto::PeerAddress;

/// File name of the optional config file inside the data directory.
pub const CONFIG_FILE: &str = "veild.toml";

/// Placeholder data directory when no environment variable names one; `resolve` refuses it.
const FALLBACK_DATA_DIR: &str = ".veil";

/// Longest duration any `*_ms` setting takes: 30 days.
const MAX_DURATION_MS: u64 = 30 * 86_400_000;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
    /// No data directory given and neither `$VEIL_DATA_DIR` nor `$HOME` is set.
    #[error("no data directory: pass --data-dir, or set VEIL_DATA_DIR or HOME")]
    NoDataDir,
}

/// Everything a node needs to know to run. Field docs are the config file's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory: identity, token, store, `address` and `api` files. Default
    /// `$VEIL_DATA_DIR`, else `$HOME/.veil`.
    pub data_dir: PathBuf,
    /// Where peers connect. Default `127.0.0.1:7400`; use `0.0.0.0:7400` to accept peers
    /// from other machines.
    pub listen: SocketAddr,
    /// Where the HTTP API, status page and gateway listen. Default `127.0.0.1:7401`. Keep it
    /// on loopback: the token guards the API, but the gateway is open to any local user.
    pub api: SocketAddr,
    /// Peers to connect to and keep connected, as `<key>@<ip>:<port>`.
    #[serde(with = "peer_text")]
    pub peers: Vec<PeerAddress>,
    /// The node's ring location as a fraction in [0, 1). Default: derived from the
    /// node's key, so it is stable across restarts.
    pub location: Option<f64>,
    /// Byte bound of the long-term store. Default 1 GiB.
    pub store_bytes: u64,
    /// Byte bound of the cache. Default 256 MiB.
    pub cache_bytes: u64,
    /// Maximum (and default) hops-to-live of requests and inserts. Default 18.
    pub max_htl: u8,
    /// Base per-hop timeout, in ms: a request forwarded with HTL h backtracks after
    /// `hop_timeout_ms × (h + 1)` without an answer. Default 2,000.
    pub hop_timeout_ms: u64,
    /// How long an API request or insert may take in all, in ms. Default 60,000.
    pub request_timeout_ms: u64,
    /// Interval of keepalive pings on an idle link, in ms. Default 1,000.
    pub keepalive_ms: u64,
    /// A link silent for this long is closed as dead, in ms. Default 5,000.
    pub dead_after_ms: u64,
    /// How long a Noise handshake may take, in ms. Default 5,000.
    pub handshake_timeout_ms: u64,
    /// First redial delay after an outbound peer drops, in ms; doubles up to
    /// `redial_max_ms`. Default 250.
    pub redial_min_ms: u64,
    /// Longest redial delay, in ms. Default 30,000.
    pub redial_max_ms: u64,
    /// Most peers connected at once. Default 40.
    pub max_peers: usize,
    /// A link this node dialled is closed and redialled with a fresh handshake (new
    /// keys) after this long, in ms; 0 never renews. Default 3,600,000 (1 h).
    pub link_renew_ms: u64,
    /// Seed nodes, as `<key>@<ip>:<port>`: a node short of peers dials one and
    /// announces itself through it (opennet).
    #[serde(with = "peer_text")]
    pub seed_nodes: Vec<PeerAddress>,
    /// Opennet: the node announces itself while it has fewer routable peers than
    /// `min(min_peers, max_peers)`. Default 10.
    pub min_peers: usize,
    /// Opennet: find peers by announcement and path folding, and answer newcomers.
    /// Default true; false keeps only the configured peers.
    pub opennet: bool,
    /// Darknet (friend-to-friend): link only to `peers`, refuse every other link,
    /// inbound included, send no announcements and take no path folding; opennet is off
    /// whatever `opennet` says. Default false.
    pub darknet: bool,
    /// Darknet: mean pause between two location swaps this node starts, in ms. Default
    /// 10,000.
    pub swap_interval_ms: u64,
    /// The anonymity walk (docs/anonymity.md): the chance that this node, on a
    /// request's walk, passes it on rather than routing it from here; 0 turns the walk
    /// off for this node's own requests (it still relays others'). Default 0.75.
    pub walk_probability: f64,
    /// Latency-aware next hops (docs/routing.md): a request may go to a peer up to this
    /// many times farther from the key than the closest one (but nearer than this node),
    /// if its measured round trip and success make it the quicker way; 1 is pure greedy
    /// routing. Inserts always go greedily. Default 32.
    pub latency_factor: f64,
    /// Nodes near its key that each block this node inserts is stored on (at most 16).
    /// Each copy costs one node 32 KiB of store. Default 7, the least that kept 97% of
    /// distinct blocks fetchable after half of a 10,000-node network failed
    /// (docs/durability.md).
    pub replicas: u8,
    /// The same for top and index blocks, which every reader of a document needs
    /// (`veil put` asks for it on them). Default 14.
    pub index_replicas: u8,
    /// Routes each insert this node starts leaves by (1–16, at most its replicas), each
    /// through its own walk and storing an equal share of the copies, so that in a
    /// roughly embedded friend graph they land where requests from anywhere end
    /// (docs/routing.md, darknet). Default: 7 with `darknet`, else 1 (every copy next
    /// to the key).
    pub insert_routes: Option<u8>,
    /// Documents (`veil:CHK@...` URIs) the node keeps alive: every
    /// `keepalive_interval_ms` it fetches each one and re-inserts the blocks that were
    /// missing or slow to find, as `veil keepalive` does. Default none.
    pub keepalive_uris: Vec<String>,
    /// The largest document the gateway serves, in bytes; a larger one is refused with a
    /// 413 page before any of it is fetched. Default 4 GiB.
    pub gateway_max_bytes: u64,
    /// How often to walk `keepalive_uris`, in ms; the first walk starts one minute after
    /// the node does (or one interval, if shorter). Default 86,400,000 (a day).
    pub keepalive_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: default_data_dir().unwrap_or_else(|| PathBuf::from(FALLBACK_DATA_DIR)),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            api: SocketAddr::from(([127, 0, 0, 1], 7401)),
            peers: Vec::new(),
            location: None,
            store_bytes: 1 << 30,
            cache_bytes: 256 << 20,
            max_htl: 18,
            hop_timeout_ms: 2_000,
            request_timeout_ms: 60_000,
            keepalive_ms: 1_000,
            dead_after_ms: 5_000,
            handshake_timeout_ms: 5_000,
            redial_min_ms: 250,
            redial_max_ms: 30_000,
            max_peers: 40,
            link_renew_ms: 3_600_000,
            seed_nodes: Vec::new(),
            min_peers: 10,
            opennet: true,
            darknet: false,
            swap_interval_ms: 10_000,
            walk_probability: veil_proto::router::DEFAULT_WALK_PROBABILITY,
            latency_factor: veil_proto::router::DEFAULT_LATENCY_FACTOR,
            replicas: veil_proto::router::DEFAULT_REPLICAS,
            index_replicas: veil_proto::router::DEFAULT_INDEX_REPLICAS,
            insert_routes: None,
            keepalive_uris: Vec::new(),
            gateway_max_bytes: 4 << 30,
            keepalive_interval_ms: 86_400_000,
        }
    }
}

/// Peer addresses in the config file are their text form, `<key>@<ip>:<port>`.
mod peer_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use veil_proto::PeerAddress;

    pub fn serialize<S: Serializer>(peers: &[PeerAddress], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(peers.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerAddress>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|e| serde::de::Error::custom(format!("peer {t:?}: {e}")))
            })
            .collect()
    }
}

/// `$VEIL_DATA_DIR`, else `$HOME/.veil`: the one rule `veild` and `veil` share, so the
/// client finds the node without being told where it is.
pub use veil_client::paths::default_data_dir;

impl Config {
    /// Parses a config file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // One line that says where: "line 3: invalid type: ...".
            let message = e.message().trim().replace('\n', " ");
            let message = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            };
            ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }
        })
    }

    /// Reads a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Checks ranges; call after all overrides are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if let Some(l) = self.location {
            if !(0.0..1.0).contains(&l) {
                return bad("location must be in [0, 1)");
            }
        }
        if self.swap_interval_ms == 0 {
            return bad("swap_interval_ms must be positive");
        }
        if !(0.0..1.0).contains(&self.walk_probability) {
            return bad("walk_probability must be in [0, 1)");
        }
        if self.insert_routes.is_some_and(|r| !(1..=16).contains(&r)) {
            return bad("insert_routes must be between 1 and 16");
        }
        if !(self.latency_factor.is_finite() && self.latency_factor >= 1.0) {
            return bad("latency_factor must be at least 1 (1 is greedy routing)");
        }
        if self.darknet && !self.seed_nodes.is_empty() {
            return bad("darknet links only to friends: remove seed_nodes (--seed-node)");
        }
        if !(1..=60).contains(&self.max_htl) {
            return bad("max_htl must be between 1 and 60 (default 18)");
        }
        if self.keepalive_ms == 0 || self.dead_after_ms <= self.keepalive_ms {
            return bad("dead_after_ms must exceed keepalive_ms, and both be positive");
        }
        if self.hop_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return bad("timeouts must be positive");
        }
        if self.handshake_timeout_ms == 0 {
            return bad("handshake_timeout_ms must be positive");
        }
        if self.redial_min_ms == 0 || self.redial_max_ms < self.redial_min_ms {
            return bad("redial_min_ms must be positive and at most redial_max_ms");
        }
        if self.max_peers == 0 {
            return bad("max_peers must be at least 1");
        }
        let most = veil_proto::message::MAX_REPLICAS;
        if !(1..=most).contains(&self.replicas) || !(1..=most).contains(&self.index_replicas) {
            return Err(ConfigError::Invalid(format!(
                "replicas and index_replicas must be between 1 and {most}"
            )));
        }
        for uri in &self.keepalive_uris {
            if let Err(e) = uri.parse::<veil_proto::uri::Uri>() {
                return Err(ConfigError::Invalid(format!(
                    "keepalive_uris: {uri:?}: {e}"
                )));
            }
        }
        if self.keepalive_interval_ms == 0 {
            return bad("keepalive_interval_ms must be positive");
        }
        // Deadlines are `now + duration` and backoff doubles: a huge value would overflow
        // the clock inside a link's task instead of being refused here.
        let longest = [
            self.hop_timeout_ms,
            self.request_timeout_ms,
            self.keepalive_ms,
            self.dead_after_ms,
            self.handshake_timeout_ms,
            self.redial_max_ms,
            self.link_renew_ms,
            self.keepalive_interval_ms,
        ];
        if longest.iter().any(|&ms| ms > MAX_DURATION_MS) {
            return bad("durations (*_ms) must be at most 30 days (2592000000 ms)");
        }
        Ok(())
    }

    /// The configured location as a ring point, if any.
    pub fn location_u64(&self) -> Option<u64> {
        // 2^64 * fraction; the fraction is < 1 so this never overflows in practice.
        self.location.map(|f| (f * 2f64.powi(64)) as u64)
    }

    /// Whether the node finds peers by opennet: on unless turned off or darknet.
    pub fn opennet_on(&self) -> bool {
        self.opennet && !self.darknet
    }

    /// The routable peer count below which the node announces.
    pub fn effective_min_peers(&self) -> usize {
        self.min_peers.min(self.max_peers)
    }

    /// The routes each insert leaves by: `insert_routes`, or the mode's default.
    pub fn effective_insert_routes(&self) -> u8 {
        self.insert_routes.unwrap_or(if self.darknet {
            veil_proto::router::DARKNET_INSERT_ROUTES
        } else {
            1
        })
    }

    /// `hop_timeout_ms` as a duration.
    pub fn hop_timeout(&self) -> Duration {
        Duration::from_millis(self.hop_timeout_ms)
    }
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// `keepalive_ms` as a duration.
    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms)
    }
    /// `dead_after_ms` as a duration.
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }
    /// `handshake_timeout_ms` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// Command-line overrides, one flag per config key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Data directory [default: $VEIL_DATA_DIR, else $HOME/.veil]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file [default: <data dir>/veild.toml if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Peer listen address; 0.0.0.0:7400 accepts other machines [default: 127.0.0.1:7400]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// HTTP API, status page and gateway address [default: 127.0.0.1:7401]
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// A peer to keep connected, as <key>@<ip>:<port> (repeatable; adds to the config
    /// file's list)
    // A key's base64url text may begin with '-': never read it as a flag.
    #[arg(
        long = "peer",
        alias = "peers",
        value_name = "ADDRESS",
        allow_hyphen_values = true
    )]
    pub peers: Vec<PeerAddress>,
    /// Ring location as a fraction in [0, 1) [default: derived from the node key]
    #[arg(long, value_name = "FRACTION", allow_hyphen_values = true)]
    pub location: Option<f64>,
    /// Byte bound of the long-term store [default: 1073741824]
    #[arg(long, value_name = "BYTES")]
    pub store_bytes: Option<u64>,
    /// Byte bound of the cache [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub cache_bytes: Option<u64>,
    /// Maximum and default hops-to-live [default: 18]
    #[arg(long, value_name = "N")]
    pub max_htl: Option<u8>,
    /// Base per-hop timeout (a hop with HTL h waits h+1 times this), ms [default: 2000]
    #[arg(long, value_name = "MS")]
    pub hop_timeout_ms: Option<u64>,
    /// Overall timeout of an API request or insert, ms [default: 60000]
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Keepalive ping interval, ms [default: 1000]
    #[arg(long, value_name = "MS")]
    pub keepalive_ms: Option<u64>,
    /// Close a link silent for this long, ms [default: 5000]
    #[arg(long, value_name = "MS")]
    pub dead_after_ms: Option<u64>,
    /// Noise handshake timeout, ms [default: 5000]
    #[arg(long, value_name = "MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// First redial delay of a dropped outbound peer, ms [default: 250]
    #[arg(long, value_name = "MS")]
    pub redial_min_ms: Option<u64>,
    /// Longest redial delay, ms [default: 30000]
    #[arg(long, value_name = "MS")]
    pub redial_max_ms: Option<u64>,
    /// Most peers connected at once [default: 40]
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,
    /// Redial links this node dialled after this long, for fresh keys; 0 never, ms
    /// [default: 3600000]
    #[arg(long, value_name = "MS")]
    pub link_renew_ms: Option<u64>,
    /// A seed node to announce through when short of peers, as <key>@<ip>:<port>
    /// (repeatable; adds to the config file's `seed_nodes`)
    #[arg(
        long = "seed-node",
        alias = "seed-nodes",
        value_name = "ADDRESS",
        allow_hyphen_values = true
    )]
    pub seed_nodes: Vec<PeerAddress>,
    /// Announce while fewer routable peers than this (capped at max_peers) [default: 10]
    #[arg(long, value_name = "N")]
    pub min_peers: Option<usize>,
    /// Opennet on or off: find peers by announcement and path folding [default: true]
    #[arg(long, value_name = "BOOL")]
    pub opennet: Option<bool>,
    /// Darknet: link only to the --peer friends, refuse strangers, no opennet
    #[arg(long)]
    pub darknet: bool,
    /// Darknet: mean pause between two location swaps this node starts, ms
    /// [default: 10000]
    #[arg(long, value_name = "MS")]
    pub swap_interval_ms: Option<u64>,
    /// Anonymity walk: chance a node on a request's walk passes it on; 0 turns it off
    /// [default: 0.75]
    #[arg(long, value_name = "P")]
    pub walk_probability: Option<f64>,
    /// Latency-aware routing: how much farther from the key than the closest peer a
    /// quicker peer may be (it must still be nearer than this node); 1 is greedy
    /// [default: 32]
    #[arg(long, value_name = "F")]
    pub latency_factor: Option<f64>,
    /// Nodes each inserted block is stored on [default: 7]
    #[arg(long, value_name = "N")]
    pub replicas: Option<u8>,
    /// Nodes each top and index block is stored on [default: 14]
    #[arg(long, value_name = "N")]
    pub index_replicas: Option<u8>,
    /// Routes each insert leaves by, each storing a share of the copies [default: 7
    /// with --darknet, else 1]
    #[arg(long, value_name = "N")]
    pub insert_routes: Option<u8>,
    /// A document to keep alive (repeatable; adds to the config file's
    /// `keepalive_uris`)
    #[arg(long = "keepalive-uri", value_name = "URI")]
    pub keepalive_uris: Vec<String>,
    /// The largest document the gateway serves, bytes [default: 4294967296]
    #[arg(long, value_name = "BYTES")]
    pub gateway_max_bytes: Option<u64>,
    /// How often to keep those documents alive, ms [default: 86400000]
    #[arg(long, value_name = "MS")]
    pub keepalive_interval_ms: Option<u64>,
}

impl Overrides {
    /// Builds the final config: defaults, then the config file, then these flags.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let data_dir = match &self.data_dir {
            Some(d) => Some(d.clone()),
            None => default_data_dir(),
        };
        let file = match (&self.config, &data_dir) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(d)) if d.join(CONFIG_FILE).exists() => Some(d.join(CONFIG_FILE)),
            _ => None,
        };
        let mut c = match file {
            Some(f) => Config::from_file(&f)?,
            None => Config::default(),
        };
        self.apply(&mut c);
        if data_dir.is_none() && c.data_dir == Path::new(FALLBACK_DATA_DIR) {
            return Err(ConfigError::NoDataDir);
        }
        c.validate()?;
        Ok(c)
    }

    /// Applies the flags that were given to `c`.
    pub fn apply(&self, c: &mut Config) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        set!(
            listen,
            api,
            store_bytes,
            cache_bytes,
            max_htl,
            hop_timeout_ms,
            request_timeout_ms,
            keepalive_ms,
            dead_after_ms,
            handshake_timeout_ms,
            redial_min_ms,
            redial_max_ms,
            max_peers,
            link_renew_ms,
            min_peers,
            opennet,
            replicas,
            index_replicas,
            gateway_max_bytes,
            keepalive_interval_ms,
            swap_interval_ms,
            walk_probability,
            latency_factor
        );
        for uri in &self.keepalive_uris {
            if !c.keepalive_uris.contains(uri) {
                c.keepalive_uris.push(uri.clone());
            }
        }
        add_new(&mut c.seed_nodes, &self.seed_nodes);
        if self.darknet {
            c.darknet = true;
        }
        if self.insert_routes.is_some() {
            c.insert_routes = self.insert_routes;
        }
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if self.location.is_some() {
            c.location = self.location;
        }
        add_new(&mut c.peers, &self.peers);
    }
}

/// Appends the addresses of `more` that `list` lacks (flags add to the file's lists).
fn add_new(list: &mut Vec<PeerAddress>, more: &[PeerAddress]) {
    for p in more {
        if !list.contains(p) {
            list.push(*p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let c = Config::from_toml(
            "listen = \"127.0.0.1:9000\"\nmax_htl = 10\nlocation = 0.5\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_htl, 10);
        assert_eq!(c.location_u64(), Some(1 << 63));
        let mut c2 = c.clone();
        Overrides {
            max_htl: Some(5),
            ..Default::default()
        }
        .apply(&mut c2);
        assert_eq!(c2.max_htl, 5);
        assert_eq!(c2.listen.port(), 9000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("lissen = 1", Path::new("x")).is_err());
        let c = Config {
            location: Some(1.5),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn absurd_durations_are_refused() {
        let c = Config {
            dead_after_ms: u64::MAX,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            link_renew_ms: MAX_DURATION_MS + 1,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            link_renew_ms: MAX_DURATION_MS,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn readme_example_parses() {
        let key = veil_proto::NodeKey([7; 32]);
        let text = format!(
            "listen = \"0.0.0.0:7400\"\npeers = [\"{key}@203.0.113.7:7400\"]\nstore_bytes = 10_737_418_240\n"
        );
        let c = Config::from_toml(&text, Path::new("veild.toml")).unwrap();
        assert_eq!(c.store_bytes, 10 << 30);
        assert_eq!(c.peers[0].key, key);
        assert!(c.validate().is_ok());
        // And it writes back in the same form.
        let again = toml::to_string(&c).unwrap();
        assert!(
            again.contains(&format!("\"{key}@203.0.113.7:7400\"")),
            "{again}"
        );
        assert!(Config::from_toml("peers = [\"nokey\"]", Path::new("x")).is_err());
    }

    #[test]
    fn a_darknet_spreads_its_inserts_unless_told_otherwise() {
        let mut c = Config::default();
        assert_eq!(c.effective_insert_routes(), 1);
        c.darknet = true;
        assert_eq!(
            c.effective_insert_routes(),
            veil_proto::router::DARKNET_INSERT_ROUTES
        );
        let c = Config::from_toml("darknet = true\ninsert_routes = 3\n", Path::new("x")).unwrap();
        assert_eq!(c.effective_insert_routes(), 3);
        let c = Config::from_toml("insert_routes = 0\n", Path::new("x")).unwrap();
        assert!(c.validate().is_err());
        let c = Config::from_toml("insert_routes = 17\n", Path::new("x")).unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn defaults_are_loopback() {
        let c = Config::default();
        assert!(c.listen.ip().is_loopback() && c.api.ip().is_loopback());
        assert_eq!((c.listen.port(), c.api.port()), (7400, 7401));
    }
}
