//! A conservative HTML attribute filter for documents the gateway serves as HTML, SVG or
//! XML.
//!
//! The Content-Security-Policy stops every fetch to another origin, but not a browser's
//! speculative connections: Chromium opens a TCP connection to the host of an `<iframe
//! src>` or a `<link rel=preconnect>` even when the policy forbids the load, and that
//! connection alone tells the outside host the reader's address. So before an HTML page
//! reaches the browser, every attribute value that could name another host is removed.
//!
//! The tokenizer follows the HTML tokenizer's tag states closely enough for this purpose
//! (tag open, attribute names and values, quoted and unquoted, `/` between attributes);
//! comments, doctypes and processing instructions pass unchanged. An attribute is
//! dropped when its value contains a backslash or `&` (an entity could spell anything),
//! or else `//` or a `:` (a scheme) — except `data:` URLs, which never touch the network,
//! absolute paths on the gateway (`/veil:CHK@...`), and attributes that only ever hold
//! text (`alt`, `title`, ...), which are kept as they are. A `style` attribute may hold a
//! `:`; the other rules apply to it. `srcdoc` is always dropped: it is a whole document
//! of its own.

/// Attributes that hold only text, never a URL: kept whatever they contain.
const TEXT_ATTRIBUTES: &[&str] = &[
    "alt",
    "title",
    "class",
    "id",
    "name",
    "value",
    "lang",
    "dir",
    "type",
    "charset",
    "width",
    "height",
    "placeholder",
    "role",
    "for",
    "label",
    "summary",
    "abbr",
    "scope",
    "align",
    "valign",
    "colspan",
    "rowspan",
    "datetime",
    "maxlength",
    "size",
    "cols",
    "rows",
];

/// Whether an attribute may stay.
fn keep(name: &[u8], value: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    if name == b"srcdoc" {
        return false;
    }
    if TEXT_ATTRIBUTES
        .iter()
        .any(|t| t.as_bytes() == name.as_slice())
        || name.starts_with(b"aria-")
    {
        return true;
    }
    // Browsers ignore ASCII whitespace and control characters inside URLs.
    let v: Vec<u8> = value
        .iter()
        .filter(|b| !b.is_ascii_whitespace() && !b.is_ascii_control())
        .map(u8::to_ascii_lowercase)
        .collect();
    // An entity could spell `/`, `:` or `\`; a backslash counts as a slash in URLs.
    if v.contains(&b'&') || v.contains(&b'\\') {
        return false;
    }
    // A data URL never touches the network; an absolute path (`/veil:CHK@...`, but not
    // `//host`) stays on the gateway.
    if v.starts_with(b"data:") || (v.first() == Some(&b'/') && v.get(1) != Some(&b'/')) {
        return true;
    }
    if v.windows(2).any(|w| w == b"//") {
        return false;
    }
    name == b"style" || !v.contains(&b':')
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Filters a whole document. See the module documentation.
pub fn filter(doc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        if doc[i] != b'<' {
            out.push(doc[i]);
            i += 1;
            continue;
        }
        match doc.get(i + 1) {
            Some(b) if b.is_ascii_alphabetic() => i = filter_tag(doc, i, &mut out),
            Some(b'!') if doc[i..].starts_with(b"<!--") => {
                let end = find(doc, i + 4, b"-->").map_or(doc.len(), |e| e + 3);
                out.extend_from_slice(&doc[i..end]);
                i = end;
            }
            Some(b'!' | b'?' | b'/') => {
                // Declarations, processing instructions and end tags carry no URL a
                // browser loads; copy to the closing `>`.
                let end = doc[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map_or(doc.len(), |p| i + p + 1);
                out.extend_from_slice(&doc[i..end]);
                i = end;
            }
            _ => {
                out.push(b'<');
                i += 1;
            }
        }
    }
    out
}

fn find(doc: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    doc.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

/// Filters the start tag at `doc[start] == b'<'`; returns where it ends.
fn filter_tag(doc: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
    let mut i = start + 1;
    while i < doc.len() && !is_space(doc[i]) && doc[i] != b'/' && doc[i] != b'>' {
        i += 1;
    }
    out.extend_from_slice(&doc[start..i]);
    loop {
        // Between attributes: whitespace and `/` separate them.
        while i < doc.len() && (is_space(doc[i]) || doc[i] == b'/') {
            i += 1;
        }
        if i >= doc.len() {
            return i;
        }
        if doc[i] == b'>' {
            out.push(b'>');
            return i + 1;
        }
        let name_start = i;
        // The first character may be `=`; the name runs to a separator.
        i += 1;
        while i < doc.len() && !is_space(doc[i]) && !matches!(doc[i], b'/' | b'>' | b'=') {
            i += 1;
        }
        let name = &doc[name_start..i];
        let mut j = i;
        while j < doc.len() && is_space(doc[j]) {
            j += 1;
        }
        let mut value: &[u8] = b"";
        let mut quoted = None;
        if doc.get(j) == Some(&b'=') {
            j += 1;
            while j < doc.len() && is_space(doc[j]) {
                j += 1;
            }
            match doc.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = doc[j + 1..]
                        .iter()
                        .position(|&b| b == q)
                        .map_or(doc.len(), |p| j + 1 + p);
                    value = &doc[j + 1..end];
                    quoted = Some(q);
                    i = (end + 1).min(doc.len());
                }
                _ => {
                    let end = doc[j..]
                        .iter()
                        .position(|&b| is_space(b) || b == b'>')
                        .map_or(doc.len(), |p| j + p);
                    value = &doc[j..end];
                    i = end;
                }
            }
        }
        if keep(name, value) {
            out.push(b' ');
            out.extend_from_slice(name);
            if value.is_empty() && quoted.is_none() && doc.get(j) != Some(&b'=') {
                continue;
            }
            out.push(b'=');
            // An unquoted value holds no space, quote or `>`, so it is copied as is.
            match quoted {
                Some(q) => {
                    out.push(q);
                    out.extend_from_slice(value);
                    out.push(q);
                }
                None => out.extend_from_slice(value),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> String {
        String::from_utf8(filter(s.as_bytes())).unwrap()
    }

    #[test]
    fn outside_references_are_removed() {
        for bad in [
            r#"<iframe src="http://evil.example/x"></iframe>"#,
            r#"<link rel=preconnect href=//evil.example>"#,
            r#"<img src = 'HTTPS://evil.example/a.png'>"#,
            r#"<img/src="//evil.example">"#,
            r#"<a href="h&#116;tp://evil.example">x</a>"#,
            r#"<img srcset="a.png 1x, //evil.example/b.png 2x">"#,
            r#"<img src="\\evil.example\x">"#,
            r#"<meta http-equiv="refresh" content="0; url=http://evil.example/">"#,
            r#"<iframe srcdoc="<img src=a.png>"></iframe>"#,
            r#"<svg><image xlink:href="ftp:evil.example"/></svg>"#,
            r#"<a href=" ht	tp://evil.example">x</a>"#,
            r#"<div style="background:url(//evil.example/x)">"#,
            "<img src=\"http://evil.example",
            r#"<img src="/\evil.example/x">"#,
            r#"<img src="/&#47;evil.example/x">"#,
            r#"<img src=" //evil.example/x">"#,
        ] {
            let out = f(bad);
            assert!(!out.contains("evil.example"), "{bad} -> {out}");
            assert!(!out.contains("srcdoc"), "{bad} -> {out}");
        }
    }

    #[test]
    fn ordinary_pages_survive() {
        let page = r#"<!DOCTYPE html><!-- a <comment> --><html lang=en><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="style.css"></head><body class='x y'><h1 title="a: b // c">Hi &amp; bye: see http://example.org</h1><img src="img/a.png" alt="a // b"><img src="data:image/png;base64,iVBORw0KGgo="><a href="../other/page.html#top">x</a><a href="/veil:CHK@abc,def/site/a.html">y</a><p style="color:red">1 < 2</p><input disabled></body></html>"#;
        assert_eq!(f(page), page);
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any bytes: no panic, and no `//` survives inside a tag's `src`/`href`.
        #[test]
        fn filter_never_panics(doc in proptest::collection::vec(
            prop_oneof![Just(b'<'), Just(b'>'), Just(b'"'), Just(b'\''), Just(b'='), Just(b'/'),
                        Just(b' '), Just(b'a'), Just(b':'), Just(b'&'), any::<u8>()], 0..300)) {
            let _ = filter(&doc);
        }

        #[test]
        fn outside_srcs_never_survive(pre in "([a-z]{1,5}(=\"[a-z ]{0,5}\"|='[a-z]{0,3}'|=[a-z]{1,3})? ){0,3}", host in "[a-z]{1,8}") {
            let doc = format!("<img {pre} src=\"http://{host}.evil/x\">");
            let out = String::from_utf8_lossy(&filter(doc.as_bytes())).into_owned();
            prop_assert!(!out.contains(".evil"), "{} -> {}", doc, out);
        }
    }
}
