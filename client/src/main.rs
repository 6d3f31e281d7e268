//! `veil`: publish and fetch Veil documents through a local `veild`.
//!
//! `put` prints exactly the URI on stdout, so `URI=$(veil put file)` works; progress goes
//! to stderr, and only when stderr is a terminal. Every failure is one `error: ...` line
//! and exit status 1.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use veil_client::api::ApiClient;
use veil_client::decode::DEFAULT_WINDOW;
use veil_client::keyword::{self, Entry, Published};
use veil_client::signed::{newest_edition, publish_signed, resolve_signed, Keystore, SkipKnown};
use veil_client::{encode, put_dir, resolve, write_body_healing, EncodeOptions, Heal, Resolved};
use veil_proto::ssk::KeyPair;
use veil_proto::uri::{usk_name, AnyUri, SignedUri};
use veil_proto::Uri;

const EXAMPLES: &str = "\
Examples:
  veil put report.pdf                 publish a file, print its URI
  URI=$(veil put ./site)              publish a directory tree
  tar c dir | veil put - --name d.tar publish standard input
  veil get \"$URI\" -o copy.pdf         fetch a document into a file
  veil get \"$URI\" > copy.pdf          ... or to standard output
  veil get \"$URI/docs/index.html\"     fetch one file of a directory
  veil get \"$URI\" -o ./site-copy      restore a whole directory
  veil keepalive \"$URI\"               check every block, restore what faded
  veil keygen me                      make a signing key, print its SSK prefix
  veil put notes.txt --key me         publish under veil:SSK@.../notes.txt
  veil site publish ./site --key me   publish the next edition of a site (USK)
  veil get \"veil:USK@.../site/-1/\"    fetch the newest edition of a site
  veil put note.txt --ksk \"hello veil\" publish under veil:KSK@hello%20veil
  veil put talk.pdf --keyword privacy rust --description \"Talk slides\"
                                      publish and list under two keywords
  veil search privacy rust            find what is listed under both words
  veil index add --key me \"$URI\" privacy   add to your own signed index
  veil search --index \"veil:USK@.../index/-1\" privacy
                                      search a publisher's signed index
  veil status                         show the node's status
  veil --data-dir /srv/veil peers     talk to the node of another data directory

The node is found through its data directory (the files `api` and `token` that veild
writes there): --data-dir, else $VEIL_DATA_DIR, else ~/.veil; or give --api and --token.";

/// Publish and fetch documents on the Veil network.
///
/// Documents are split and encrypted on this machine; the node only ever receives
/// encrypted blocks. Anyone holding a URI can fetch its document, nobody else can read
/// it.
#[derive(Parser, Debug)]
#[command(name = "veil", version, after_help = EXAMPLES)]
struct Cli {
    /// The node's data directory (holds its `api` and `token` files)
    /// [default: $VEIL_DATA_DIR, else ~/.veil]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's API base URL, e.g. http://127.0.0.1:7401, instead of the data
    /// directory's `api` file (the token: --token, else the data directory's `token`)
    #[arg(long, global = true, value_name = "URL")]
    api: Option<String>,
    /// The node's API token (the contents of its `token` file)
    // Tokens are base64url and may start with `-`.
    #[arg(long, global = true, value_name = "TOKEN", allow_hyphen_values = true)]
    token: Option<String>,
    /// Use only what the node holds: every block is read from (or written to) its own
    /// store and cache, and no request or insert leaves it (HTL 0; overrides --htl)
    #[arg(long, global = true)]
    offline: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a file, a directory, or standard input (`-`); prints the URI
    Put {
        /// What to publish: a file, a directory, or `-` for standard input
        path: String,
        /// Name to record (default: the file or directory name); with --key, also the
        /// document's name under the key
        #[arg(long)]
        name: Option<String>,
        /// MIME type to record (default: guessed from the name)
        #[arg(long)]
        mime: Option<String>,
        /// Publish under this key of the keystore (see `veil keygen`): prints
        /// veil:SSK@.../NAME, a name that stays put
        #[arg(long, value_name = "KEY", conflicts_with = "ksk")]
        key: Option<String>,
        /// Publish under these words: prints veil:KSK@WORDS. Anyone who knows the words
        /// can fetch it, and anyone may claim them first
        #[arg(long, value_name = "WORDS")]
        ksk: Option<String>,
        /// Inserts kept in flight at once (1 to 128): more is faster while the node and
        /// its peers have CPU to spare
        #[arg(long, value_name = "N", default_value_t = veil_client::DEFAULT_INSERT_WINDOW as u64,
              value_parser = clap::value_parser!(u64).range(1..=128))]
        window: u64,
        #[command(flatten)]
        listing: ListingArgs,
        #[command(flatten)]
        htl: HtlArg,
    },
    /// Make a signing key in the keystore (<data dir>/keys); prints its SSK prefix
    Keygen {
        /// The key's name (letters, digits, '-', '_', '.')
        name: String,
    },
    /// Updatable sites (USK)
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Fetch a document, a file of a directory (URI/path), or a whole directory
    Get {
        /// The URI, optionally followed by a path inside a directory: veil:CHK@.../name/path
        uri: String,
        /// Where to write: a file, or the directory to restore a tree into.
        /// Without it a file goes to standard output
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace files that exist already (otherwise get refuses before writing)
        #[arg(long)]
        force: bool,
        /// The largest document (or directory tree) to write, e.g. 512M or 10G; a
        /// larger one is refused before anything is written
        #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
        max_size: u64,
        #[command(flatten)]
        htl: HtlArg,
    },
    /// Keep documents alive: fetch every block (index copies and check blocks too),
    /// rebuild the missing ones and insert them again, with those found only late.
    /// Prints one line per URI; exits 1 if any block could not be restored
    Keepalive {
        /// The documents' URIs (a directory's URI covers every file in it)
        #[arg(required = true)]
        uris: Vec<String>,
        /// Print a JSON array, one object per URI, instead of lines
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        htl: HtlArg,
    },
    /// Find documents by words: those listed under every word given (AND)
    Search {
        /// The words (each one keyword; case and Unicode forms do not matter)
        #[arg(required = true, value_name = "WORD")]
        words: Vec<String>,
        /// Search this publisher's signed index (a veil:USK@.../NAME/-1 URI made by
        /// `veil index add`) instead of the network's keyword entries
        #[arg(long, value_name = "URI")]
        index: Option<String>,
        /// Print one JSON object per line (uri, name, size, mime, description)
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        htl: HtlArg,
    },
    /// A signed index of your own: words to documents, that only you can add to
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Show the node's status
    Status,
    /// List the node's peers
    Peers,
}

/// `--keyword` and `--description`, on the commands that publish.
#[derive(clap::Args, Debug, Clone, Default)]
struct ListingArgs {
    /// List the document under these keywords, so `veil search WORD` finds it
    /// (anyone who knows a word can find the entry; nobody else can read it)
    #[arg(long = "keyword", value_name = "WORD", num_args = 1..)]
    keywords: Vec<String>,
    /// A line describing the document, shown in search results
    #[arg(long, value_name = "TEXT", requires = "keywords")]
    description: Option<String>,
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Add a document to your index under words and publish the index's next edition;
    /// prints the index's URI (give it to `veil search --index`)
    Add {
        /// The key the index is published under (see `veil keygen`)
        #[arg(long, value_name = "KEY")]
        key: String,
        /// The index's name under the key
        #[arg(long, value_name = "NAME", default_value = "index")]
        index: String,
        /// A line describing the document
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The document's URI
        uri: String,
        /// The words it is found by
        #[arg(required = true, value_name = "WORD")]
        words: Vec<String>,
        #[command(flatten)]
        htl: HtlArg,
    },
}

/// `--htl`, on the commands that route.
#[derive(clap::Args, Debug, Clone, Copy)]
struct HtlArg {
    /// Hops-to-live of the inserts and requests this command routes (1-60; default
    /// and cap: the node's max_htl, 18 unless configured)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=60))]
    htl: Option<u8>,
}

#[derive(Subcommand, Debug)]
enum SiteCommand {
    /// Publish a directory as the next edition of a site; prints veil:USK@.../SITE/N.
    /// Blocks the node already holds (unchanged files) are not uploaded again
    Publish {
        /// The directory
        dir: PathBuf,
        /// The key to publish under (see `veil keygen`)
        #[arg(long, value_name = "KEY")]
        key: String,
        /// The site's name (default: the directory's name)
        #[arg(long)]
        site: Option<String>,
        #[command(flatten)]
        listing: ListingArgs,
        #[command(flatten)]
        htl: HtlArg,
    },
}

/// `--keyword` takes every word after it, so `veil put --keyword a b FILE` leaves no
/// FILE: say so, and how to write it, instead of clap's bare "PATH not provided".
fn keyword_order_hint(e: &clap::Error, args: impl IntoIterator<Item = String>) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::MissingRequiredArgument {
        return None;
    }
    let args: Vec<String> = args.into_iter().collect();
    let at = args.iter().rposition(|a| a == "--keyword")?;
    let last = args[at + 1..]
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .last()?;
    Some(format!(
        "no file or directory to publish: --keyword took {last:?} as a keyword, as it takes \
         every word after it; give the path before --keyword (veil put PATH --keyword \
         WORD...) or end the words with -- (--keyword WORD... -- PATH)"
    ))
}

fn main() {
    // A bug is still one line, not a backtrace (RUST_BACKTRACE does not apply here).
    std::panic::set_hook(Box::new(|info| {
        let what = info.to_string().replace('\n', " ");
        eprintln!("error: internal error (please report): {what}");
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if let Some(hint) = keyword_order_hint(&e, std::env::args()) {
            eprintln!("error: {hint}");
            std::process::exit(2);
        }
        e.exit()
    });
    let code = match run(cli) {
        Ok(()) => 0,
        // `veil get URI | head` closing the pipe early is not a failure worth a message.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", veil_client::error_line(&*e));
            1
        }
    };
    report_peak_memory();
    std::process::exit(code);
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// With `VEIL_REPORT_PEAK_RSS` set, prints the process's peak resident memory to stderr
/// (Linux only): the end-to-end tests measure `veil get` with it.
fn report_peak_memory() {
    if std::env::var_os("VEIL_REPORT_PEAK_RSS").is_none() {
        return;
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            eprintln!(
                "veil: peak {}",
                line.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        // Only the commands that talk to the node look for it (keygen does not).
        let connect = |htl: Option<u8>| -> Result<ApiClient> {
            let client = ApiClient::locate(
                cli.data_dir.as_deref(),
                cli.api.as_deref(),
                cli.token.as_deref(),
            )?;
            Ok(client.with_htl(if cli.offline { Some(0) } else { htl }))
        };
        match &cli.command {
            Command::Put {
                path,
                name,
                mime,
                key,
                ksk,
                window,
                listing,
                htl,
            } => {
                check_listing(listing)?;
                let signer = signer(&cli.data_dir, key.as_deref(), ksk.as_deref())?;
                put(
                    connect(htl.htl)?,
                    path,
                    name.clone(),
                    mime.clone(),
                    signer,
                    listing,
                    *window as usize,
                )
                .await
            }
            Command::Keygen { name } => keygen(&cli.data_dir, name),
            Command::Site {
                command:
                    SiteCommand::Publish {
                        dir,
                        key,
                        site,
                        listing,
                        htl,
                    },
            } => {
                check_listing(listing)?;
                site_publish(
                    connect(htl.htl)?,
                    &cli.data_dir,
                    dir,
                    key,
                    site.clone(),
                    listing,
                )
                .await
            }
            Command::Get {
                uri,
                output,
                force,
                max_size,
                htl,
            } => {
                let opts = GetOptions {
                    force: *force,
                    max_size: *max_size,
                };
                let got = get(
                    connect(htl.htl)?,
                    &cli.data_dir,
                    uri,
                    output.as_deref(),
                    &opts,
                )
                .await;
                match got {
                    Err(e) if cli.offline && is_not_found(&e) => Err(anyhow::anyhow!(
                        "not all of it is held by this node, and --offline asks nothing of \
                         the network (a node keeps what it stores and caches for others, \
                         not what its own user fetched)"
                    )),
                    other => other,
                }
            }
            Command::Keepalive { uris, json, htl } => {
                keepalive(connect(htl.htl)?, uris, *json).await
            }
            Command::Search {
                words,
                index,
                json,
                htl,
            } => search(connect(htl.htl)?, words, index.as_deref(), *json).await,
            Command::Index {
                command:
                    IndexCommand::Add {
                        key,
                        index,
                        description,
                        uri,
                        words,
                        htl,
                    },
            } => {
                let add = IndexAdd {
                    key,
                    index,
                    description: description.as_deref(),
                    uri,
                    words,
                };
                index_add(connect(htl.htl)?, &cli.data_dir, add).await
            }
            Command::Status => print_json(connect(None)?.status().await?),
            Command::Peers => print_json(connect(None)?.peers().await?),
        }
    })
}

/// Whether a get failed because a block was found nowhere it looked.
fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<veil_client::DecodeError>(),
            Some(veil_client::DecodeError::DocumentNotFound)
        ) || matches!(
            c.downcast_ref::<veil_client::ApiError>(),
            Some(veil_client::ApiError::NotFound(_))
        )
    })
}

fn print_json(value: serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn progress_bar(len: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    Some(bar.with_message(what.to_string()))
}

fn files_bar(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar.with_message(what.to_string()))
}

/// The keystore of the data directory given or found.
fn keystore(data_dir: &Option<PathBuf>) -> Result<Keystore> {
    let dir = match data_dir {
        Some(d) => d.clone(),
        None => veil_client::api::default_data_dir()
            .context("no data directory for the keystore: set --data-dir, VEIL_DATA_DIR or HOME")?,
    };
    Ok(Keystore::new(&dir))
}

/// Who signs a `put`: a key of the keystore, or keywords.
enum Signer {
    Key(Box<KeyPair>),
    Words(String),
}

fn signer(
    data_dir: &Option<PathBuf>,
    key: Option<&str>,
    ksk: Option<&str>,
) -> Result<Option<Signer>> {
    match (key, ksk) {
        (Some(name), _) => Ok(Some(Signer::Key(Box::new(keystore(data_dir)?.load(name)?)))),
        (None, Some(words)) if words.trim().is_empty() => bail!("--ksk needs words"),
        (None, Some(words)) => Ok(Some(Signer::Words(words.to_string()))),
        (None, None) => Ok(None),
    }
}

fn keygen(data_dir: &Option<PathBuf>, name: &str) -> Result<()> {
    let ks = keystore(data_dir)?;
    let pair = ks.create(name)?;
    let uri = SignedUri::Ssk {
        keys: pair.keys(),
        name: "NAME".into(),
        path: Vec::new(),
    }
    .to_string();
    // The name space's prefix: documents published with --key go under it.
    println!("{}", uri.trim_end_matches("NAME"));
    eprintln!(
        "veil: key {name:?} saved in {} (keep it private: whoever holds it can publish under this name)",
        ks.dir().join(name).display()
    );
    Ok(())
}

async fn put(
    client: ApiClient,
    path: &str,
    name: Option<String>,
    mime: Option<String>,
    signer: Option<Signer>,
    listing: &ListingArgs,
    window: usize,
) -> Result<()> {
    if signer.is_some() && path == "-" && name.is_none() && matches!(signer, Some(Signer::Key(_))) {
        bail!("publishing standard input under a key needs --name (the document's name under the key)");
    }
    if let Some(m) = &mime {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        };
        let ok = m.len() <= veil_client::format::MAX_MIME_LEN
            && m.split_once('/').is_some_and(|(t, s)| {
                let sub = s.split(';').next().unwrap_or("").trim();
                token(t) && token(sub)
            });
        if !ok {
            bail!("bad --mime {m:?}: a MIME type looks like text/plain or image/png");
        }
    }
    let opts = EncodeOptions {
        name: name.clone(),
        mime,
        concurrency: window,
        ..EncodeOptions::default()
    };
    let done = if path == "-" {
        let bar = progress_bar(None, "put");
        let done = encode(&client, tokio::io::stdin(), &opts, |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        })
        .await?;
        finish(bar);
        done
    } else {
        let p = Path::new(path);
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {path}"))?;
        if meta.is_dir() {
            for s in veil_client::dir::skipped_files(p)? {
                eprintln!("veil: skipped {s}: not a regular file (publishing follows no link out of the tree)");
            }
            let bar = files_bar("put");
            let done = put_dir(&client, p, &opts, |i, n| {
                if let Some(b) = &bar {
                    b.set_length(n as u64);
                    b.set_position(i as u64);
                }
            })
            .await?;
            finish(bar);
            done
        } else {
            let file = tokio::fs::File::open(p)
                .await
                .with_context(|| format!("cannot read {path}"))?;
            let opts = EncodeOptions {
                name: name.or_else(|| p.file_name().and_then(|n| n.to_str()).map(str::to_string)),
                ..opts
            };
            let bar = progress_bar(Some(meta.len()), "put");
            let reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
            let done = encode(&client, reader, &opts, |n| {
                if let Some(b) = &bar {
                    b.set_position(n)
                }
            })
            .await?;
            finish(bar);
            done
        }
    };
    let uri = match signer {
        None => done.uri.to_string(),
        Some(Signer::Key(pair)) => {
            let doc = done.uri.name.clone().unwrap_or_default();
            publish_signed(&client, &pair, &doc, done.uri.keys).await?;
            SignedUri::Ssk {
                keys: pair.keys(),
                name: doc,
                path: Vec::new(),
            }
            .to_string()
        }
        Some(Signer::Words(words)) => {
            publish_signed(&client, &KeyPair::from_words(&words), "", done.uri.keys).await?;
            SignedUri::Ksk {
                words,
                path: Vec::new(),
            }
            .to_string()
        }
    };
    let entry = Entry {
        name: done.uri.name.clone().unwrap_or_default(),
        uri: uri.clone(),
        size: done.size,
        mime: done.mime.clone(),
        description: listing.description.clone().unwrap_or_default(),
    };
    list_under(&client, &entry, &listing.keywords).await?;
    println!("{uri}");
    if client.stored_locally_only() {
        eprintln!(
            "veil: stored locally only (the node has 0 peers); it inserts the blocks into the network once it has peers"
        );
    }
    Ok(())
}

async fn keepalive(client: ApiClient, uris: &[String], json: bool) -> Result<()> {
    // Parse them all first: a typo in the third should not wait for the first two.
    for t in uris {
        t.parse::<AnyUri>()
            .with_context(|| format!("malformed URI {t}"))?;
    }
    let mut out = Vec::new();
    let mut bad = 0;
    for text in uris {
        // A signed name is kept alive through the document it names now.
        let uri = match to_chk(&client, text).await {
            Ok(u) => u,
            Err(e) => {
                bad += 1;
                let msg = format!("{e:#}");
                if json {
                    out.push(serde_json::json!({ "uri": text, "error": msg }));
                } else {
                    println!("{text}: error: {msg}");
                }
                continue;
            }
        };
        let bar = blocks_bar("keepalive");
        let result = veil_client::keepalive(client.clone(), client.clone(), uri.keys, |r| {
            if let Some(b) = &bar {
                b.set_position(r.blocks);
                b.set_message(format!(
                    "keepalive: {} missing, {} late, {} inserted again",
                    r.missing, r.late, r.reinserted
                ));
            }
        })
        .await;
        finish(bar);
        let line = match &result {
            Ok(r) => {
                if r.lost > 0 {
                    bad += 1;
                }
                format!(
                    "{text}: {} block{} in {} document{}, {} missing ({} rebuilt, {} lost), {} late, {} inserted again",
                    r.blocks,
                    plural(r.blocks),
                    r.documents,
                    plural(r.documents),
                    r.missing,
                    r.rebuilt,
                    r.lost,
                    r.late,
                    r.reinserted
                )
            }
            Err(e) => {
                bad += 1;
                format!("{text}: error: {e}")
            }
        };
        if json {
            let mut v = match &result {
                Ok(r) => serde_json::to_value(r)?,
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            v["uri"] = serde_json::Value::String(text.clone());
            out.push(v);
        } else {
            println!("{line}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if bad > 0 {
        bail!(
            "{bad} of {} document{} could not be fully restored",
            uris.len(),
            plural(uris.len() as u64)
        );
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn blocks_bar(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{msg} {spinner} {pos} blocks checked")
            .expect("valid template"),
    );
    Some(bar.with_message(what.to_string()))
}

fn finish(bar: Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// The CHK URI (with path) that any Veil URI leads to; for a USK edition -1, says on
/// stderr which edition it found.
async fn to_chk(client: &ApiClient, text: &str) -> Result<Uri> {
    match text.parse::<AnyUri>().context("malformed URI")? {
        AnyUri::Chk(uri) => Ok(uri),
        AnyUri::Signed(signed) => {
            let r = resolve_signed(client, &signed, 0).await?;
            if let (SignedUri::Usk { site, .. }, Some(e)) = (&signed, r.edition) {
                eprintln!("veil: edition {e} of {site}");
            }
            Ok(Uri {
                keys: r.target,
                name: None,
                path: signed.path().to_vec(),
            })
        }
    }
}

async fn site_publish(
    client: ApiClient,
    data_dir: &Option<PathBuf>,
    dir: &Path,
    key: &str,
    site: Option<String>,
    listing: &ListingArgs,
) -> Result<()> {
    let ks = keystore(data_dir)?;
    let pair = ks.load(key)?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (publish a file with veil put --key)",
            dir.display()
        );
    }
    let site = match site {
        Some(s) => s,
        None => dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .context("the directory has no name to use: give --site")?,
    };
    if site.is_empty() || site.contains('/') {
        bail!("bad site name {site:?}: no slashes, not empty");
    }
    // The next edition: after the newest this keystore published, or the network has.
    let hint = ks.last_edition(key, &site);
    let newest = newest_edition(&client, pair.keys(), &site, hint.unwrap_or(0)).await?;
    let edition = match (newest, hint) {
        (Some(n), Some(h)) => n.max(h) + 1,
        (Some(n), None) => n + 1,
        (None, Some(h)) => h + 1,
        (None, None) => 0,
    };
    let sink = SkipKnown::new(client.clone());
    let bar = files_bar("site");
    let opts = EncodeOptions::named(site.clone());
    let done = put_dir(&sink, dir, &opts, |i, n| {
        if let Some(b) = &bar {
            b.set_length(n as u64);
            b.set_position(i as u64);
        }
    })
    .await?;
    finish(bar);
    publish_signed(&client, &pair, &usk_name(&site, edition), done.uri.keys).await?;
    ks.set_last_edition(key, &site, edition)?;
    let (skipped, sent) = sink.counts();
    // Searches lead to the newest edition, so one entry serves every edition.
    let newest = SignedUri::Usk {
        keys: pair.keys(),
        site: site.clone(),
        edition: -1,
        path: Vec::new(),
    };
    let entry = Entry {
        uri: newest.to_string(),
        name: site.clone(),
        size: done.size,
        mime: done.mime.clone(),
        description: listing.description.clone().unwrap_or_default(),
    };
    list_under(&client, &entry, &listing.keywords).await?;
    println!(
        "{}",
        SignedUri::Usk {
            keys: pair.keys(),
            site: site.clone(),
            edition: edition as i64,
            path: Vec::new(),
        }
    );
    eprintln!(
        "veil: edition {edition} of {site}: {sent} block{} uploaded, {skipped} already published",
        plural(sent)
    );
    Ok(())
}

/// Refuses bad keywords and descriptions before anything is published.
fn check_listing(listing: &ListingArgs) -> Result<()> {
    for w in &listing.keywords {
        keyword::normalise(w).with_context(|| format!("bad --keyword {w:?}"))?;
    }
    if let Some(d) = &listing.description {
        if d.len() > keyword::MAX_DESCRIPTION_LEN || d.chars().any(char::is_control) {
            bail!(
                "bad --description: one line of at most {} bytes",
                keyword::MAX_DESCRIPTION_LEN
            );
        }
    }
    Ok(())
}

/// Publishes `entry` under each of `words`, saying on stderr where it went.
async fn list_under(client: &ApiClient, entry: &Entry, words: &[String]) -> Result<()> {
    for w in words {
        let slot = keyword::publish_entry(client, w, entry)
            .await
            .with_context(|| format!("listing under keyword {w:?}"))?;
        let norm = keyword::normalise(w)?;
        match slot {
            Published::New(n) => eprintln!("veil: listed under {norm:?} (slot {n})"),
            Published::Already(n) => eprintln!("veil: already listed under {norm:?} (slot {n})"),
        }
    }
    Ok(())
}

async fn search(
    client: ApiClient,
    words: &[String],
    index: Option<&str>,
    json: bool,
) -> Result<()> {
    for w in words {
        keyword::normalise(w).with_context(|| format!("bad keyword {w:?}"))?;
    }
    let found = match index {
        None => keyword::search(&client, words).await?,
        Some(text) => {
            let uri = text
                .parse::<AnyUri>()
                .with_context(|| format!("malformed index URI {text}"))?;
            read_index(&client, &uri)
                .await
                .with_context(|| format!("reading the index {text}"))?
                .context("no edition of this index was found")?
                .search(words)?
        }
    };
    if json {
        for e in &found {
            println!("{}", serde_json::to_string(e)?);
        }
    } else if found.is_empty() {
        eprintln!("veil: nothing found");
    } else {
        print_table(&found);
    }
    Ok(())
}

/// A size for people: 1.5 MiB.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_table(found: &[Entry]) {
    let clip = |s: &str, max: usize| -> String {
        if s.chars().count() > max {
            let mut t: String = s.chars().take(max - 1).collect();
            t.push('~');
            t
        } else {
            s.to_string()
        }
    };
    let rows: Vec<[String; 4]> = found
        .iter()
        .map(|e| {
            [
                clip(&e.name, 40),
                human_size(e.size),
                clip(&e.mime, 24),
                e.uri.clone(),
            ]
        })
        .collect();
    let head = ["NAME", "SIZE", "TYPE", "URI"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    println!(
        "{:w0$}  {:>w1$}  {:w2$}  {}",
        head[0], head[1], head[2], head[3]
    );
    for (r, e) in rows.iter().zip(found) {
        println!("{:w0$}  {:>w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
        if !e.description.is_empty() {
            println!("{:w0$}  {}", "", e.description);
        }
    }
    eprintln!("veil: {} found", found.len());
}

/// The newest edition of the signed index `uri` (None when it has none).
async fn read_index(client: &ApiClient, uri: &AnyUri) -> Result<Option<keyword::Index>> {
    let chk = match uri {
        AnyUri::Chk(u) => u.clone(),
        AnyUri::Signed(signed) => match resolve_signed(client, signed, 0).await {
            Ok(r) => Uri {
                keys: r.target,
                name: None,
                path: Vec::new(),
            },
            Err(veil_client::signed::SignedError::NoEdition(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
    };
    let Resolved::File(_, top) = resolve(client, &chk).await? else {
        bail!("this URI names a directory, not an index");
    };
    if top.meta.size > keyword::MAX_INDEX_BYTES {
        bail!(
            "the index is {} bytes; at most {} are read",
            top.meta.size,
            keyword::MAX_INDEX_BYTES
        );
    }
    let mut body = Vec::new();
    veil_client::write_body(client.clone(), top, DEFAULT_WINDOW, &mut body, |_| {}).await?;
    Ok(Some(keyword::Index::from_json(&body)?))
}

struct IndexAdd<'a> {
    key: &'a str,
    index: &'a str,
    description: Option<&'a str>,
    uri: &'a str,
    words: &'a [String],
}

/// `veil index add`: the document's entry (its name, size and type read from the
/// network) added to the newest edition of the index, published as the next.
async fn index_add(client: ApiClient, data_dir: &Option<PathBuf>, add: IndexAdd<'_>) -> Result<()> {
    for w in add.words {
        keyword::normalise(w).with_context(|| format!("bad keyword {w:?}"))?;
    }
    if add.index.is_empty() || add.index.contains('/') {
        bail!("bad index name {:?}: no slashes, not empty", add.index);
    }
    let ks = keystore(data_dir)?;
    let pair = ks.load(add.key)?;
    add.uri
        .parse::<AnyUri>()
        .with_context(|| format!("malformed URI {}", add.uri))?;
    // What the document is, from the document itself.
    let chk = to_chk(&client, add.uri).await?;
    let (name, size, mime) = match resolve(&client, &chk).await? {
        Resolved::File(_, top) => (
            top.meta
                .name
                .clone()
                .or(chk.name.clone())
                .unwrap_or_default(),
            top.meta.size,
            top.meta.mime.clone(),
        ),
        Resolved::Directory(entries) => (
            chk.name.clone().unwrap_or_default(),
            entries.iter().map(|e| e.size).sum(),
            "inode/directory".to_string(),
        ),
    };
    let entry = Entry {
        uri: add.uri.to_string(),
        name,
        size,
        mime,
        description: add.description.unwrap_or_default().to_string(),
    };
    let newest_uri = AnyUri::Signed(SignedUri::Usk {
        keys: pair.keys(),
        site: add.index.to_string(),
        edition: -1,
        path: Vec::new(),
    });
    let mut index = read_index(&client, &newest_uri)
        .await?
        .unwrap_or_else(keyword::Index::new);
    index.add(entry, add.words)?;
    let json = index.to_json();
    let opts = EncodeOptions {
        name: Some(format!("{}.json", add.index)),
        mime: Some("application/json".into()),
        ..EncodeOptions::default()
    };
    let done = encode(&client, &json[..], &opts, |_| {}).await?;
    let hint = ks.last_edition(add.key, add.index);
    let newest = newest_edition(&client, pair.keys(), add.index, hint.unwrap_or(0)).await?;
    let edition = match (newest, hint) {
        (Some(n), Some(h)) => n.max(h) + 1,
        (Some(n), None) => n + 1,
        (None, Some(h)) => h + 1,
        (None, None) => 0,
    };
    publish_signed(&client, &pair, &usk_name(add.index, edition), done.uri.keys).await?;
    ks.set_last_edition(add.key, add.index, edition)?;
    println!("{newest_uri}");
    eprintln!(
        "veil: edition {edition} of index {:?}: {} entr{}",
        add.index,
        index.entries.len(),
        if index.entries.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

/// How `get` treats the reader's disk.
struct GetOptions {
    force: bool,
    max_size: u64,
}

/// `4G`, `512M`, `64k`, `1000`: bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: use a number of bytes, or K, M, G, T")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?}: use a number of bytes, or K, M, G, T"))
}

async fn get(
    client: ApiClient,
    _data_dir: &Option<PathBuf>,
    text: &str,
    output: Option<&Path>,
    opts: &GetOptions,
) -> Result<()> {
    let uri = to_chk(&client, text).await?;
    // `-o -` is standard output, as everywhere else.
    let output = output.filter(|p| *p != Path::new("-"));
    match resolve(&client, &uri).await? {
        Resolved::Directory(entries) => {
            let Some(out) = output else {
                let n = entries.len();
                bail!(
                    "this URI names a directory of {n} file{}: restore it with -o DIR, or name one file as URI/path",
                    plural(n as u64)
                );
            };
            let bar = files_bar("get");
            let ropts = veil_client::dir::RestoreOptions {
                overwrite: opts.force,
                max_bytes: opts.max_size,
            };
            veil_client::dir::restore_with(&client, &entries, out, &ropts, |i, n| {
                if let Some(b) = &bar {
                    b.set_length(n as u64);
                    b.set_position(i as u64);
                }
            })
            .await?;
            finish(bar);
        }
        Resolved::File(_, top) => {
            veil_client::save::check_size(&top, opts.max_size)?;
            // The name in a URI is only a label: say so when it differs from the one the
            // document carries, so a misleading link does not go unnoticed.
            if let (Some(said), Some(is)) = (&uri.name, &top.meta.name) {
                if uri.path.is_empty() && said != is {
                    eprintln!(
                        "veil: note: the URI calls this document {said:?}; it calls itself {is:?}"
                    );
                }
            }
            // Blocks this fetch has to rebuild are inserted again afterwards, so the
            // next reader finds them directly (a bounded number, like any insert).
            let heal = Heal::new();
            let bar = progress_bar(Some(top.meta.size), "get");
            let tick = |n| {
                if let Some(b) = &bar {
                    b.set_position(n)
                }
            };
            match output {
                None => {
                    let mut out = tokio::io::stdout();
                    write_body_healing(
                        client.clone(),
                        top,
                        DEFAULT_WINDOW,
                        &mut out,
                        tick,
                        heal.clone(),
                    )
                    .await?;
                }
                Some(path) => {
                    // The library's save: no file replaced unless --force, written under a
                    // temporary name and renamed when whole; an interrupt drops the save,
                    // which removes what it wrote.
                    let save_opts = veil_client::save::SaveOptions {
                        overwrite: opts.force,
                        max_bytes: opts.max_size,
                    };
                    let save = veil_client::save::save_file(
                        client.clone(),
                        top,
                        path,
                        &save_opts,
                        tick,
                        heal.clone(),
                    );
                    tokio::select! {
                        r = save => { r?; }
                        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
                    }
                }
            }
            finish(bar);
            if !heal.is_empty() {
                // The document is out; failing to heal is worth a word, not an error.
                match heal.reinsert(&client).await {
                    Ok(n) => eprintln!(
                        "veil: {n} block{} of this document had to be rebuilt; inserted {} again",
                        plural(n as u64),
                        if n == 1 { "it" } else { "them" }
                    ),
                    Err(e) => eprintln!("veil: could not insert rebuilt blocks again: {e}"),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_taken_as_a_keyword_gets_a_hint() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let args = argv(&["veil", "put", "--keyword", "a", "talk.pdf"]);
        let e = Cli::try_parse_from(&args).unwrap_err();
        let hint = keyword_order_hint(&e, args).expect("a hint");
        assert!(
            hint.contains("\"talk.pdf\"") && hint.contains("-- PATH"),
            "{hint}"
        );
        // The same words with the path first, or after --, parse.
        for ok in [
            &["veil", "put", "talk.pdf", "--keyword", "a"][..],
            &["veil", "put", "--keyword", "a", "--", "talk.pdf"][..],
        ] {
            let cli = Cli::try_parse_from(ok).unwrap();
            assert!(matches!(cli.command, Command::Put { .. }), "{ok:?}");
        }
        // Other mistakes keep clap's own message.
        let args = argv(&["veil", "put"]);
        let e = Cli::try_parse_from(&args).unwrap_err();
        assert_eq!(keyword_order_hint(&e, args), None);
    }

    #[test]
    fn tokens_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["veil", "--token", "-5abc", "status"]).unwrap();
        assert_eq!(cli.token.as_deref(), Some("-5abc"));
        let cli = Cli::try_parse_from(["veil", "status", "--token", "--x"]).unwrap();
        assert_eq!(cli.token.as_deref(), Some("--x"));
    }

    #[test]
    fn help_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
