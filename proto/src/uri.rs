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
    #[error("not a Veil URI: it must start with \"veil:CHK@\"")]
    WrongScheme,
    /// A key type other than CHK.
    #[error("unsupported key type {0:?}: only CHK@ is supported")]
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

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Uri, UriError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UriError::Empty);
        }
        if text.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        let rest = text.strip_prefix("veil:").ok_or(UriError::WrongScheme)?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (ktype, rest) = rest
            .split_once('@')
            .ok_or_else(|| UriError::UnsupportedKeyType(rest.chars().take(8).collect()))?;
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
}
