//! Veil URIs: the text a publisher hands out and a reader fetches by.
//!
//! ```text
//! veil:CHK@<routing key>,<data key>[/<name>[/<path>...]]
//! ```
//!
//! Keys are 43 characters of unpadded URL-safe base64. The optional name is the document's
//! file name (or a directory's name); segments after it address a file inside a directory
//! manifest. Name and path segments are percent-encoded UTF-8 so a URI survives copy and
//! paste, shells and browsers. Parsing also accepts the form with `//` after the scheme
//! omitted and tolerates surrounding whitespace, but never guesses at anything else.

use crate::block::ChkKeys;
use crate::keys::{decode_key, DataKey, KeyParseError, RoutingKey};
use crate::ssk::{KeyPair, SskKeys};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::fmt;
use std::str::FromStr;

/// The scheme and key type prefix of a CHK URI.
pub const CHK_PREFIX: &str = "veil:CHK@";

/// Longest URI text accepted, a bound against hostile input.
pub const MAX_URI_LEN: usize = 8192;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Nothing to parse.
    #[error("empty URI")]
    Empty,
    /// Longer than [`MAX_URI_LEN`].
    #[error("URI is longer than {MAX_URI_LEN} characters")]
    TooLong,
    /// Does not start with `veil:`.
    #[error("not a Veil URI: it must start with \"veil:\" (veil:CHK@, veil:SSK@, veil:USK@ or veil:KSK@)")]
    WrongScheme,
    /// A key type Veil does not know (or, where only CHK will do, another one).
    #[error("unsupported key type {0:?}: CHK@, SSK@, USK@ and KSK@ are Veil's")]
    UnsupportedKeyType(String),
    /// The comma between the two keys is missing.
    #[error("missing data key: a CHK URI is veil:CHK@<routing key>,<data key>")]
    MissingDataKey,
    /// The routing key is malformed.
    #[error("bad routing key: {0}")]
    BadRoutingKey(KeyParseError),
    /// The data key is malformed.
    #[error("bad data key: {0}")]
    BadDataKey(KeyParseError),
    /// A name or path segment is not valid percent-encoded UTF-8.
    #[error("bad percent-encoding in name or path")]
    BadEscape,
    /// A signed URI without the document (or site) name after its keys.
    #[error("missing name: an SSK URI is veil:SSK@<key hash>,<crypto key>/<name>, a USK URI veil:USK@<key hash>,<crypto key>/<site>/<edition>")]
    MissingName,
    /// A USK edition that is not a whole number from -1 (the newest) up.
    #[error("bad edition {0:?}: a USK edition is a number from 0 up, or -1 for the newest")]
    BadEdition(String),
    /// A KSK with no words.
    #[error("a KSK URI needs words: veil:KSK@<words>")]
    EmptyWords,
}

/// A parsed CHK URI.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Uri {
    /// The keys of the top block.
    pub keys: ChkKeys,
    /// The document's name, if the URI carries one.
    pub name: Option<String>,
    /// Path inside a directory manifest, one entry per segment.
    pub path: Vec<String>,
}

impl Uri {
    /// A URI for `keys` with no name.
    pub fn new(keys: ChkKeys) -> Uri {
        Uri {
            keys,
            name: None,
            path: Vec::new(),
        }
    }

    /// The same URI with a name.
    pub fn with_name(mut self, name: impl Into<String>) -> Uri {
        self.name = Some(name.into());
        self
    }

    /// The same URI without name and path: just the keys.
    pub fn bare(&self) -> Uri {
        Uri::new(self.keys)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn escape(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Decodes `%XX` escapes (exactly two hex digits each) in `s`; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, UriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UriError::BadEscape)?;
            // `from_str_radix` alone would also take a sign (`%+1`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(UriError::BadEscape);
            }
            let hex = std::str::from_utf8(hex).map_err(|_| UriError::BadEscape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::BadEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::BadEscape)
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(128);
        s.push_str(CHK_PREFIX);
        s.push_str(&self.keys.routing.to_text());
        s.push(',');
        s.push_str(&self.keys.data.to_text());
        if self.name.is_some() || !self.path.is_empty() {
            s.push('/');
            escape(self.name.as_deref().unwrap_or(""), &mut s);
        }
        for seg in &self.path {
            s.push('/');
            escape(seg, &mut s);
        }
        f.write_str(&s)
    }
}

/// What users paste, made canonical: surrounding whitespace trimmed; a gateway URL
/// (`http://127.0.0.1:7401/veil:CHK@...`) reduced to its URI; a scheme and keys that a
/// tool percent-encoded (`veil%3ACHK%40...`) decoded; `veil:` and the key type in any
/// case (`veil:chk@`); `veil://` as `veil:`. Keys and names are left as they are.
pub fn normalize(text: &str) -> Result<String, UriError> {
    let mut t = text.trim();
    if t.is_empty() {
        return Err(UriError::Empty);
    }
    if t.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    for web in ["http://", "https://"] {
        if let Some(rest) = strip_ci(t, web) {
            t = rest.find('/').map_or("", |i| &rest[i + 1..]);
        }
    }
    let owned;
    if let Some(rest) = strip_ci(t, "veil://") {
        owned = format!("veil:{rest}");
        t = &owned;
    }
    let (head, tail) = t.split_at(t.find('/').unwrap_or(t.len()));
    let head = if strip_ci(head, "veil%3a").is_some() {
        percent_decode(head)?
    } else {
        head.to_string()
    };
    let rest = strip_ci(&head, "veil:").ok_or(UriError::WrongScheme)?;
    let out = match rest.split_once('@') {
        Some((ktype, keys)) => format!("veil:{}@{keys}{tail}", ktype.to_ascii_uppercase()),
        None => format!("veil:{rest}{tail}"),
    };
    Ok(out)
}

/// `s` without `prefix`, compared ignoring ASCII case.
fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The key type and what follows its `@`, of a canonical URI's text ([`normalize`]).
fn split_type(text: &str) -> Result<(&str, &str), UriError> {
    let rest = text.strip_prefix("veil:").ok_or(UriError::WrongScheme)?;
    rest.split_once('@')
        .ok_or_else(|| UriError::UnsupportedKeyType(rest.chars().take(8).collect()))
}

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Uri, UriError> {
        // Escaping can make the canonical text longer than what was parsed: a URI that
        // could not be given back as text is refused, so every parsed URI prints to one
        // that parses (found by fuzzing).
        let uri = Uri::parse_text(text)?;
        if uri.to_string().len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        Ok(uri)
    }
}

impl Uri {
    fn parse_text(text: &str) -> Result<Uri, UriError> {
        let text = normalize(text)?;
        let (ktype, rest) = split_type(&text)?;
        if ktype != "CHK" {
            return Err(UriError::UnsupportedKeyType(ktype.to_string()));
        }
        let (keys, tail) = match rest.split_once('/') {
            Some((k, t)) => (k, Some(t)),
            None => (rest, None),
        };
        let (r, d) = keys.split_once(',').ok_or(UriError::MissingDataKey)?;
        let routing = RoutingKey(decode_key(r).map_err(UriError::BadRoutingKey)?);
        let data = DataKey(decode_key(d).map_err(UriError::BadDataKey)?);
        let mut uri = Uri::new(ChkKeys { routing, data });
        if let Some(tail) = tail {
            let mut segs = tail.split('/');
            let name = percent_decode(segs.next().unwrap_or(""))?;
            uri.name = (!name.is_empty()).then_some(name);
            for seg in segs.filter(|s| !s.is_empty()) {
                uri.path.push(percent_decode(seg)?);
            }
        }
        Ok(uri)
    }
}

/// A URI of a signed name: a document under an SSK, an edition of an updatable site
/// (USK), or a keyword document (KSK).
///
/// ```text
/// veil:SSK@<key hash>,<crypto key>/<name>[/<path>...]
/// veil:USK@<key hash>,<crypto key>/<site>/<edition>[/<path>...]   edition -1: the newest
/// veil:KSK@<words>[/<path>...]
/// ```
///
/// The keys are the name space's [`SskKeys`] (43 base64url characters each). Names,
/// sites, words and path segments are percent-encoded UTF-8, as in CHK URIs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SignedUri {
    /// A document under a signed key.
    Ssk {
        /// The name space.
        keys: SskKeys,
        /// The document's name in it.
        name: String,
        /// Path inside a directory.
        path: Vec<String>,
    },
    /// An edition of a site.
    Usk {
        /// The name space.
        keys: SskKeys,
        /// The site's name.
        site: String,
        /// The edition, or -1 for the newest to be found.
        edition: i64,
        /// Path inside the site.
        path: Vec<String>,
    },
    /// A keyword document.
    Ksk {
        /// The words (the whole key).
        words: String,
        /// Path inside a directory.
        path: Vec<String>,
    },
}

/// The SSK document name of edition `edition` of `site`.
pub fn usk_name(site: &str, edition: u64) -> String {
    format!("{site}-{edition}")
}

impl SignedUri {
    /// The name space's keys and the document name the URI's block is stored under
    /// (for a USK, that of its edition; `None` for -1, which must be looked up).
    pub fn target(&self) -> Option<(SskKeys, String)> {
        match self {
            SignedUri::Ssk { keys, name, .. } => Some((*keys, name.clone())),
            SignedUri::Usk {
                keys,
                site,
                edition,
                ..
            } => u64::try_from(*edition)
                .ok()
                .map(|e| (*keys, usk_name(site, e))),
            SignedUri::Ksk { words, .. } => {
                Some((KeyPair::from_words(words).keys(), String::new()))
            }
        }
    }

    /// The path inside a directory.
    pub fn path(&self) -> &[String] {
        match self {
            SignedUri::Ssk { path, .. }
            | SignedUri::Usk { path, .. }
            | SignedUri::Ksk { path, .. } => path,
        }
    }
}

fn keys_text(keys: &SskKeys, s: &mut String) {
    s.push_str(&URL_SAFE_NO_PAD.encode(keys.pubkey_hash));
    s.push(',');
    s.push_str(&URL_SAFE_NO_PAD.encode(keys.crypto_key));
}

impl fmt::Display for SignedUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(128);
        match self {
            SignedUri::Ssk { keys, name, path } => {
                s.push_str("veil:SSK@");
                keys_text(keys, &mut s);
                s.push('/');
                escape(name, &mut s);
                for seg in path {
                    s.push('/');
                    escape(seg, &mut s);
                }
            }
            SignedUri::Usk {
                keys,
                site,
                edition,
                path,
            } => {
                s.push_str("veil:USK@");
                keys_text(keys, &mut s);
                s.push('/');
                escape(site, &mut s);
                s.push_str(&format!("/{edition}"));
                for seg in path {
                    s.push('/');
                    escape(seg, &mut s);
                }
            }
            SignedUri::Ksk { words, path } => {
                s.push_str("veil:KSK@");
                escape(words, &mut s);
                for seg in path {
                    s.push('/');
                    escape(seg, &mut s);
                }
            }
        }
        f.write_str(&s)
    }
}

impl FromStr for SignedUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<SignedUri, UriError> {
        // As for [`Uri`]: the canonical text must fit too.
        let uri = SignedUri::parse_text(text)?;
        if uri.to_string().len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        Ok(uri)
    }
}

impl SignedUri {
    fn parse_text(text: &str) -> Result<SignedUri, UriError> {
        let text = normalize(text)?;
        let (ktype, rest) = split_type(&text)?;
        let mut segs = rest.split('/');
        let head = segs.next().unwrap_or("");
        let mut tail: Vec<String> = Vec::new();
        for seg in segs {
            tail.push(percent_decode(seg)?);
        }
        let path = |from: usize, tail: &[String]| -> Vec<String> {
            tail.iter()
                .skip(from)
                .filter(|s| !s.is_empty())
                .cloned()
                .collect()
        };
        match ktype {
            "KSK" => {
                let words = percent_decode(head)?;
                if words.trim().is_empty() {
                    return Err(UriError::EmptyWords);
                }
                Ok(SignedUri::Ksk {
                    words,
                    path: path(0, &tail),
                })
            }
            "SSK" | "USK" => {
                let (h, c) = head.split_once(',').ok_or(UriError::MissingDataKey)?;
                let keys = SskKeys {
                    pubkey_hash: decode_key(h).map_err(UriError::BadRoutingKey)?,
                    crypto_key: decode_key(c).map_err(UriError::BadDataKey)?,
                };
                let name = tail.first().cloned().unwrap_or_default();
                if name.is_empty() {
                    return Err(UriError::MissingName);
                }
                if ktype == "SSK" {
                    return Ok(SignedUri::Ssk {
                        keys,
                        name,
                        path: path(1, &tail),
                    });
                }
                let ed = tail.get(1).cloned().unwrap_or_default();
                let edition: i64 = ed.parse().map_err(|_| UriError::BadEdition(ed.clone()))?;
                if edition < -1 || ed.starts_with('+') {
                    return Err(UriError::BadEdition(ed));
                }
                Ok(SignedUri::Usk {
                    keys,
                    site: name,
                    edition,
                    path: path(2, &tail),
                })
            }
            other => Err(UriError::UnsupportedKeyType(other.to_string())),
        }
    }
}

/// Any Veil URI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AnyUri {
    /// A content-hash URI.
    Chk(Uri),
    /// A signed name.
    Signed(SignedUri),
}

impl FromStr for AnyUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<AnyUri, UriError> {
        let text = normalize(text)?;
        let (ktype, _) = split_type(&text)?;
        if ktype == "CHK" {
            Ok(AnyUri::Chk(text.parse()?))
        } else {
            Ok(AnyUri::Signed(text.parse()?))
        }
    }
}

impl fmt::Display for AnyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyUri::Chk(u) => u.fmt(f),
            AnyUri::Signed(u) => u.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> ChkKeys {
        ChkKeys {
            routing: RoutingKey([0xAB; 32]),
            data: DataKey([0x01; 32]),
        }
    }

    /// Frozen text form.
    #[test]
    fn vector() {
        let uri = Uri::new(keys()).with_name("my file.txt");
        assert_eq!(
            uri.to_string(),
            "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
             AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/my%20file.txt"
        );
        assert_eq!(uri.to_string().parse::<Uri>().unwrap(), uri);
    }

    #[test]
    fn path_round_trip() {
        let mut uri = Uri::new(keys()).with_name("site");
        uri.path = vec!["docs".into(), "ünï code?.html".into()];
        assert_eq!(uri.to_string().parse::<Uri>().unwrap(), uri);
        let bare = Uri::new(keys());
        assert_eq!(bare.to_string().parse::<Uri>().unwrap(), bare);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let good = Uri::new(keys()).to_string();
        assert_eq!("".parse::<Uri>(), Err(UriError::Empty));
        assert_eq!("   ".parse::<Uri>(), Err(UriError::Empty));
        assert_eq!("http://x".parse::<Uri>(), Err(UriError::WrongScheme));
        assert!(matches!(
            "veil:SSK@abc".parse::<Uri>(),
            Err(UriError::UnsupportedKeyType(t)) if t == "SSK"
        ));
        assert_eq!(
            good.split(',').next().unwrap().parse::<Uri>(),
            Err(UriError::MissingDataKey)
        );
        assert!(matches!(
            good.replacen('q', "!", 1).parse::<Uri>(),
            Err(UriError::BadRoutingKey(KeyParseError::BadBase64(_)))
        ));
        assert!(matches!(
            format!("{}AA", good).parse::<Uri>(),
            Err(UriError::BadDataKey(_))
        ));
        assert!(matches!(
            format!("{good}/%zz").parse::<Uri>(),
            Err(UriError::BadEscape)
        ));
        // Two hex digits, not a signed number.
        assert_eq!(
            format!("{good}/a%+1").parse::<Uri>(),
            Err(UriError::BadEscape)
        );
        assert_eq!("veil:".repeat(3000).parse::<Uri>(), Err(UriError::TooLong));
        // Short enough as typed, too long once its control characters are escaped.
        let ksk = format!("veil:KSK@{}", "\u{4}".repeat(MAX_URI_LEN - 20));
        assert_eq!(ksk.parse::<AnyUri>(), Err(UriError::TooLong));
    }

    #[test]
    fn uris_may_be_exactly_the_longest_allowed() {
        let keys = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
        let chk = format!("veil:CHK@{keys}/");
        let ksk = "veil:KSK@".to_string();
        for start in [chk, ksk] {
            let longest = format!("{start}{}", "a".repeat(MAX_URI_LEN - start.len()));
            assert_eq!(longest.len(), MAX_URI_LEN);
            let parsed = longest.parse::<AnyUri>().expect("the longest URI allowed");
            assert_eq!(parsed.to_string(), longest, "printed back as given");
            assert_eq!(normalize(&longest).as_deref(), Ok(longest.as_str()));
            let over = format!("{longest}a");
            assert_eq!(over.parse::<AnyUri>(), Err(UriError::TooLong));
            assert_eq!(normalize(&over), Err(UriError::TooLong));
        }
        let longest = format!("veil:CHK@{keys}/{}", "a".repeat(MAX_URI_LEN - 97));
        assert!(longest.parse::<Uri>().is_ok());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Uri>();
        }

        #[test]
        fn round_trip(r: [u8; 32], d: [u8; 32], name in "[^/]{1,20}", path in proptest::collection::vec("[^/]{1,10}", 0..4)) {
            let uri = Uri { keys: ChkKeys { routing: RoutingKey(r), data: DataKey(d) }, name: Some(name), path };
            prop_assert_eq!(uri.to_string().parse::<Uri>().unwrap(), uri);
        }
    }

    fn ssk_keys() -> SskKeys {
        SskKeys {
            pubkey_hash: [0xAB; 32],
            crypto_key: [0x01; 32],
        }
    }

    /// Frozen text forms of signed URIs, and what parses to what.
    #[test]
    fn signed_vectors() {
        let ssk = SignedUri::Ssk {
            keys: ssk_keys(),
            name: "my page".into(),
            path: vec!["a.html".into()],
        };
        let text = "veil:SSK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                    AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/my%20page/a.html";
        assert_eq!(ssk.to_string(), text);
        assert_eq!(text.parse::<SignedUri>().unwrap(), ssk);
        let usk = SignedUri::Usk {
            keys: ssk_keys(),
            site: "blog".into(),
            edition: -1,
            path: vec![],
        };
        let text = "veil:USK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                    AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/blog/-1";
        assert_eq!(usk.to_string(), text);
        assert_eq!(text.parse::<SignedUri>().unwrap(), usk);
        assert_eq!(usk.target(), None, "-1 must be looked up");
        let ed3: SignedUri = text.replace("/-1", "/3/index.html").parse().unwrap();
        assert_eq!(ed3.target(), Some((ssk_keys(), "blog-3".into())));
        assert_eq!(ed3.path(), ["index.html"]);
        let ksk: SignedUri = "veil:KSK@free%20speech".parse().unwrap();
        assert_eq!(
            ksk,
            SignedUri::Ksk {
                words: "free speech".into(),
                path: vec![]
            }
        );
        assert_eq!(ksk.to_string(), "veil:KSK@free%20speech");
        assert_eq!(
            ksk.target(),
            Some((KeyPair::from_words("free speech").keys(), String::new()))
        );
        assert!(matches!(
            "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
                .parse::<AnyUri>(),
            Ok(AnyUri::Chk(_))
        ));
        assert!(matches!(
            "veil:KSK@x".parse::<AnyUri>(),
            Ok(AnyUri::Signed(_))
        ));
    }

    #[test]
    fn bad_signed_uris_are_refused() {
        let keys = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
        for (text, want) in [
            (
                format!("veil:USK@{keys}/blog/-2"),
                UriError::BadEdition("-2".into()),
            ),
            (
                format!("veil:USK@{keys}/blog/x"),
                UriError::BadEdition("x".into()),
            ),
            (
                format!("veil:USK@{keys}/blog/+1"),
                UriError::BadEdition("+1".into()),
            ),
            (
                format!("veil:USK@{keys}/blog"),
                UriError::BadEdition(String::new()),
            ),
            (format!("veil:SSK@{keys}/"), UriError::MissingName),
            (format!("veil:SSK@{keys}"), UriError::MissingName),
            ("veil:KSK@".to_string(), UriError::EmptyWords),
            ("veil:KSK@%20".to_string(), UriError::EmptyWords),
            ("veil:SSK@abc/doc".to_string(), UriError::MissingDataKey),
            (
                "veil:XYZ@abc".to_string(),
                UriError::UnsupportedKeyType("XYZ".into()),
            ),
        ] {
            assert_eq!(text.parse::<SignedUri>(), Err(want), "{text}");
        }
        // A CHK-only parser still says so for signed URIs.
        assert!(matches!(
            "veil:KSK@x".parse::<Uri>(),
            Err(UriError::UnsupportedKeyType(_))
        ));
    }

    proptest! {
        /// Signed URIs survive printing and parsing, whatever the names.
        #[test]
        fn signed_round_trip(name in "[^/]{1,20}", seg in "[^/]{1,10}", ed in -1i64..1000, h in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let keys = SskKeys { pubkey_hash: h, crypto_key: c };
            for u in [
                SignedUri::Ssk { keys, name: name.clone(), path: vec![seg.clone()] },
                SignedUri::Usk { keys, site: name.clone(), edition: ed, path: vec![seg.clone()] },
            ] {
                prop_assert_eq!(u.to_string().parse::<SignedUri>().unwrap(), u);
            }
            if !name.trim().is_empty() {
                let k = SignedUri::Ksk { words: name.clone(), path: vec![seg.clone()] };
                prop_assert_eq!(k.to_string().parse::<SignedUri>().unwrap(), k);
            }
        }
    }

    /// What users paste: a gateway URL, an encoded scheme, another case.
    #[test]
    fn pasted_forms_are_accepted() {
        let canonical = "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                         AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/my%20file.txt";
        let want: Uri = canonical.parse().unwrap();
        for pasted in [
            format!("http://127.0.0.1:7401/{canonical}"),
            format!("HTTPS://localhost/{canonical}"),
            canonical
                .replacen("veil:CHK@", "veil%3ACHK%40", 1)
                .replacen(',', "%2C", 1),
            canonical.replacen("veil:CHK@", "VEIL:chk@", 1),
            canonical.replacen("veil:", "veil://", 1),
            format!("  {canonical}\n"),
        ] {
            assert_eq!(pasted.parse::<Uri>(), Ok(want.clone()), "{pasted}");
        }
        assert_eq!(
            "http://127.0.0.1:7401/".parse::<Uri>(),
            Err(UriError::WrongScheme)
        );
        assert!(matches!(
            "veil:ksk@a%25b".parse::<SignedUri>(),
            Ok(SignedUri::Ksk { words, .. }) if words == "a%b"
        ));
    }
}
