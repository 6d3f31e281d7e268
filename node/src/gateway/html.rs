//! The filter for markup the gateway shows in a browser (HTML, and SVG and XHTML, which
//! it serves as HTML), on `lol_html`: a streaming rewriter whose tokenizer is the HTML
//! standard's, so it sees tags, attributes, comments and raw-text elements exactly where
//! a browser does.
//!
//! The Content-Security-Policy stops every fetch to another origin, but not a browser's
//! speculative connections: Chromium opens a TCP connection to the host of an `<iframe
//! src>` or a `<link rel=preconnect>` even when the policy forbids the load, and that
//! connection alone tells the outside host the reader's address. So nothing that could
//! name another host reaches the browser:
//!
//! - elements that load or navigate by themselves are removed with their content
//!   (`script`, `iframe`, `frame`, `frameset`, `object`, `embed`, `applet`, `base`,
//!   `portal`, `noscript`, `noembed`, `noframes`, `xmp`, `plaintext`, `template`), and
//!   every `<meta http-equiv>` (refresh, and the rest: the gateway's headers rule); a
//!   removed element leaves a space, so the text around it cannot join into a new tag;
//! - every `on*` handler and `srcdoc` attribute is removed, and every attribute with an
//!   unusual name (`=http:host`, `<`: parse errors browsers accept), which a rewritten tag
//!   could join to its neighbour as a value; a tag holding an attribute the rewriter
//!   cannot remove loses its tag (its content stays);
//! - any other attribute whose value could name a host is removed: one holding `&` (an
//!   entity could spell anything) or `\` (a slash to URL parsers), or `//`, or a scheme
//!   (`:`) other than `data:` of a picture, sound or font — unless it is an absolute path on the gateway
//!   (`/veil:CHK@...`, never `//host`) or an attribute that only ever holds text (`alt`,
//!   `title`, `class`, ...). ASCII whitespace and control characters are ignored when
//!   judging, as URL parsers ignore them;
//! - CSS (`style` attributes and `<style>` elements) loses every declaration block that
//!   holds `url(`, `@import`, `image-set(`, `image(`, a backslash escape or a `<`: a style
//!   attribute is dropped whole, a `<style>` element's text from that point on.
//!
//! The document is read as UTF-8 whatever it declares, and the gateway sends it with
//! `charset=utf-8`, which overrides any `<meta charset>`; a UTF-16 byte-order mark, which
//! would override even that and hide every tag from the filter, makes it refuse the
//! document. Memory is bounded per document whatever its size: the rewriter buffers at
//! most [`MAX_BUFFER`] bytes of an unfinished token. A tag that the end of the document
//! interrupts passes unjudged: browsers drop it.

use lol_html::html_content::ContentType;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{element, text, MemorySettings};
use std::sync::{Arc, Mutex};

/// The most the rewriter may hold of an unfinished token (a tag or a comment); a
/// document with a longer one is cut there.
pub const MAX_BUFFER: usize = 1 << 20;

/// Elements removed with everything inside them.
const REMOVED: &[&str] = &[
    "script",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "base",
    "portal",
    "noscript",
    "noembed",
    "noframes",
    "xmp",
    "plaintext",
    "template",
];

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
    "viewbox",
    "xmlns",
    "version",
];

/// CSS that can load something.
const CSS_LOADS: &[&str] = &["url(", "@import", "image-set(", "image(", "\\", "<"];

/// Why a document cannot be filtered.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A UTF-16 byte-order mark: the browser would decode it as UTF-16, the filter
    /// cannot see its tags.
    #[error("the document is UTF-16 (byte-order mark); the gateway shows only UTF-8 markup")]
    Utf16,
    /// The markup is ambiguous to a streaming parser, or a token is too long.
    #[error("the markup cannot be filtered safely: {0}")]
    Rewriting(String),
}

/// Whether an attribute may stay.
fn keep(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name == "srcdoc" || name.starts_with("on") || !plain_name(&name) {
        return false;
    }
    // Namespace declarations name a namespace, which nothing fetches.
    if TEXT_ATTRIBUTES.contains(&name.as_str())
        || name.starts_with("aria-")
        || name.starts_with("xmlns:")
    {
        return true;
    }
    // Browsers ignore ASCII whitespace and control characters inside URLs.
    let v: String = value
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if name == "style" {
        return !css_loads(&v);
    }
    // An entity could spell `/`, `:` or `\`; a backslash counts as a slash in URLs.
    if v.contains('&') || v.contains('\\') {
        return false;
    }
    // A data URL never touches the network; an absolute path (`/veil:CHK@...`, but not
    // `//host`) stays on the gateway.
    if v.starts_with('/') && !v.starts_with("//") {
        return true;
    }
    if let Some(media) = v.strip_prefix("data:") {
        // Pictures, sound and fonts only: a data URL of markup (HTML, SVG) is a document
        // of its own that could name other hosts.
        return [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "image/avif",
            "audio/",
            "video/",
            "font/",
        ]
        .iter()
        .any(|m| media.starts_with(m));
    }
    !v.contains("//") && !v.contains(':')
}

/// Whether an attribute name is an ordinary one (a letter, `_` or `:` first, then
/// letters, digits, `-`, `_`, `:`, `.`). A name like `=//host` is a parse error that
/// browsers accept; once a neighbour is removed and the tag is written out again,
/// `<img src x=& =http:host>` would read `<img src =http:host>`, giving `src` that value, so
/// such names never pass (found by the `markup_filter` fuzz target).
fn plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
}

/// Whether CSS text (lower-cased) could load something.
fn css_loads(css: &str) -> bool {
    CSS_LOADS.iter().any(|p| css.contains(p))
}

/// The state of the `<style>` element being read: the tail of its text so far (a
/// pattern may straddle two chunks) and whether a loading construct was seen.
#[derive(Default)]
struct StyleState {
    tail: String,
    poisoned: bool,
}

/// Where the rewriter's output goes.
type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// A streaming filter: [`Filter::write`] chunks in, filtered bytes out.
pub struct Filter {
    rewriter: HtmlRewriter<'static, Sink>,
    out: Arc<Mutex<Vec<u8>>>,
    /// The document's first bytes, until two are seen (for the byte-order mark).
    head: Option<Vec<u8>>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::new()
    }
}

impl Filter {
    /// A filter for one document.
    pub fn new() -> Filter {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let out = out.clone();
            Box::new(move |c: &[u8]| out.lock().expect("filter output").extend_from_slice(c))
                as Sink
        };
        let style = Arc::new(Mutex::new(StyleState::default()));
        let style_start = style.clone();
        let settings = Settings::new_send()
            .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(MAX_BUFFER))
            .append_element_content_handler(element!("*", move |el| {
                let tag = el.tag_name();
                if REMOVED.contains(&tag.as_str())
                    || (tag == "meta" && el.has_attribute("http-equiv"))
                {
                    // A space, not nothing: the text on either side must not join into a
                    // new tag (`<<script></script>img src=//host>` would become one).
                    el.replace(" ", ContentType::Text);
                    return Ok(());
                }
                if tag == "style" {
                    *style_start.lock().expect("style state") = StyleState::default();
                }
                let drop: Vec<String> = el
                    .attributes()
                    .iter()
                    .filter(|a| !keep(&a.name(), &a.value()))
                    .map(|a| a.name())
                    .collect();
                for name in drop {
                    el.remove_attribute(&name);
                }
                // An attribute the rewriter cannot remove (it refuses names it could not
                // write, like `=http:host`) takes its tag with it; the content stays.
                if el.attributes().iter().any(|a| !keep(&a.name(), &a.value())) {
                    // Spaces where the tags were, so no text joins into a new tag.
                    el.before(" ", ContentType::Text);
                    el.after(" ", ContentType::Text);
                    el.remove_and_keep_content();
                }
                Ok(())
            }))
            .append_element_content_handler(text!("style", move |t| {
                let mut s = style.lock().expect("style state");
                let lower = t.as_str().to_ascii_lowercase();
                let seen = format!("{}{lower}", s.tail);
                if s.poisoned || css_loads(&seen) {
                    s.poisoned = true;
                    t.replace("", ContentType::Text);
                }
                // Keep enough to see a pattern that straddles the next chunk.
                let keep_from = seen.len().saturating_sub(16);
                let cut = (keep_from..=seen.len())
                    .find(|&i| seen.is_char_boundary(i))
                    .unwrap_or(seen.len());
                s.tail = seen[cut..].to_string();
                Ok(())
            }));
        Filter {
            rewriter: HtmlRewriter::new(settings, sink),
            out,
            head: Some(Vec::new()),
        }
    }

    /// Feeds the next bytes of the document; returns the filtered bytes ready so far.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, FilterError> {
        if let Some(head) = &mut self.head {
            head.extend_from_slice(chunk);
            if head.len() < 2 {
                return Ok(Vec::new());
            }
            let head = self.head.take().unwrap_or_default();
            if head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE]) {
                return Err(FilterError::Utf16);
            }
            self.feed(&head)?;
        } else {
            self.feed(chunk)?;
        }
        Ok(std::mem::take(
            &mut *self.out.lock().expect("filter output"),
        ))
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), FilterError> {
        self.rewriter
            .write(bytes)
            .map_err(|e| FilterError::Rewriting(e.to_string()))
    }

    /// Ends the document; returns the last filtered bytes.
    pub fn end(mut self) -> Result<Vec<u8>, FilterError> {
        if let Some(head) = self.head.take() {
            // Fewer than two bytes in all: no room for a byte-order mark.
            self.feed(&head)?;
        }
        // What the rewriter had not parsed (a tag cut short by the end of the document)
        // passes as it was: a browser drops a tag that the end of input interrupts, so it
        // never reaches the attributes the filter did not judge.
        self.rewriter
            .end()
            .map_err(|e| FilterError::Rewriting(e.to_string()))?;
        Ok(std::mem::take(
            &mut *self.out.lock().expect("filter output"),
        ))
    }
}

/// Filters a whole document (tests, fuzzing and small documents).
pub fn filter(doc: &[u8]) -> Result<Vec<u8>, FilterError> {
    let mut f = Filter::new();
    let mut out = f.write(doc)?;
    out.extend(f.end()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> String {
        String::from_utf8(filter(s.as_bytes()).expect("filtered")).unwrap()
    }

    #[test]
    fn outside_references_are_removed() {
        for bad in [
            r#"<iframe src="http://evil.example/x"></iframe>"#,
            r#"<link rel=preconnect href=//evil.example>"#,
            r#"<link rel=dns-prefetch href="HTTPS://evil.example">"#,
            r#"<img src = 'HTTPS://evil.example/a.png'>"#,
            r#"<img/src="//evil.example">"#,
            r#"<a href="h&#116;tp://evil.example">x</a>"#,
            r#"<a href="h&#x74;tp&colon;//evil.example">x</a>"#,
            r#"<img srcset="a.png 1x, //evil.example/b.png 2x">"#,
            r#"<img src="\\evil.example\x">"#,
            r#"<meta http-equiv="refresh" content="0; url=http://evil.example/">"#,
            r#"<META HTTP-EQUIV=Refresh CONTENT="0;URL=//evil.example/">"#,
            r#"<iframe srcdoc="<img src=a.png>"></iframe>"#,
            r#"<svg><image xlink:href="ftp:evil.example"/></svg>"#,
            r#"<svg><use href="https://evil.example/s.svg#a"/></svg>"#,
            r#"<svg><script href="//evil.example/x.js"/></svg>"#,
            r#"<a href=" ht	tp://evil.example">x</a>"#,
            r#"<div style="background:url(//evil.example/x)">"#,
            r#"<div style="background:u\72l(//evil.example/x)">"#,
            r#"<style>@import "//evil.example/a.css";</style>"#,
            r#"<style>p{background:image-set("//evil.example/x" 1x)}</style>"#,
            r#"<style>p{background:URL( //evil.example/x )}</style>"#,
            r#"<img src="/\evil.example/x">"#,
            r#"<img src="/&#47;evil.example/x">"#,
            r#"<img src=" //evil.example/x">"#,
            r#"<base href="http://evil.example/">"#,
            r#"<form action="http://evil.example/"><button formaction="//evil.example">x</button></form>"#,
            r#"<a ping="http://evil.example/">x</a>"#,
            r#"<video poster="//evil.example/p.jpg"></video>"#,
            r#"<object data="//evil.example/x"></object>"#,
            r#"<embed src="//evil.example/x">"#,
            r#"<script src="//evil.example/x.js"></script>"#,
            r#"<noscript><p title="</noscript><img src=//evil.example/x>"></noscript>"#,
            r#"<xmp><img src=//evil.example/x></xmp>"#,
            r#"<template><img src=//evil.example/x></template>"#,
            r#"<body onload="fetch('//evil.example')">"#,
            r#"<!--><img src=//evil.example/x>-->"#,
            r#"<!---><img src=//evil.example/x>-->"#,
            r#"<a href="jAvAsCrIpT:fetch('//evil.example')">x</a>"#,
            r#"<a href="data:text/html,<img src=//evil.example/x>">x</a>"#,
            // A removed neighbour must not hand a value to a valueless attribute: written
            // out again, `<img src x=& =http:h>` would read `<img src =http:h>`.
            "<img src x=& =http:evil.example>",
            "<img src\n\0b\t=o&b\t=https:evil.example>",
        ] {
            let out = f(bad);
            assert!(!out.contains("evil.example"), "{bad} -> {out}");
            assert!(!out.contains("srcdoc"), "{bad} -> {out}");
        }
    }

    /// A tag the end of the document interrupts passes unjudged, and harmless: browsers
    /// drop it (the HTML standard's eof-in-tag rules), and nothing can follow it.
    #[test]
    fn a_tag_cut_by_the_end_is_left_for_the_browser_to_drop() {
        let out = f("<p>a</p><img src=\"http://evil.example");
        assert_eq!(out, "<p>a</p><img src=\"http://evil.example");
    }

    /// Handlers and `srcdoc` go even when their values look harmless; odd but ordinary
    /// names (`_x`, `:y`) and a gateway path with a space in front stay (found missing by
    /// mutation testing).
    #[test]
    fn handlers_go_and_ordinary_oddities_stay() {
        for (doc, gone) in [
            ("<img src=a.png onerror=alert(1)>", "onerror"),
            ("<body ONLOAD=x>", "onload"),
            ("<p srcdoc=x>", "srcdoc"),
        ] {
            assert!(
                !f(doc).to_ascii_lowercase().contains(gone),
                "{doc} -> {}",
                f(doc)
            );
        }
        for doc in [
            r#"<div _x="1" :y="2">a</div>"#,
            r#"<a href=" /veil:CHK@abc,def/x">y</a>"#,
        ] {
            assert_eq!(f(doc), doc);
        }
    }

    #[test]
    fn ordinary_pages_survive() {
        let page = r#"<!DOCTYPE html><!-- a <comment> --><html lang=en><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="style.css"><style>p { color: red; margin: 0 }</style></head><body class='x y'><h1 title="a: b // c">Hi &amp; bye: see http://example.org</h1><img src="img/a.png" alt="a // b"><img src="data:image/png;base64,iVBORw0KGgo="><a href="../other/page.html#top">x</a><a href="/veil:CHK@abc,def/site/a.html">y</a><p style="color:red">1 < 2</p><input disabled></body></html>"#;
        assert_eq!(f(page), page);
    }

    /// SVG and XHTML keep what makes them render: namespaces, self-closing tags, the XML
    /// declaration (untouched input passes byte for byte).
    #[test]
    fn svg_and_xhtml_survive() {
        let svg = r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10" width="100" height="100"><circle cx="5" cy="5" r="4" fill="red"/><use xlink:href="#c"/></svg>"##;
        assert_eq!(f(svg), svg);
        let xhtml = r#"<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head><body><p>a<br/>b</p></body></html>"#;
        assert_eq!(f(xhtml), xhtml);
    }

    #[test]
    fn utf16_is_refused_and_tiny_documents_pass() {
        assert!(matches!(
            filter(b"\xff\xfe<\0i\0m\0g\0"),
            Err(FilterError::Utf16)
        ));
        assert!(matches!(filter(b"\xfe\xff\0<"), Err(FilterError::Utf16)));
        assert_eq!(filter(b"a").unwrap(), b"a");
        assert_eq!(filter(b"").unwrap(), b"");
        // A byte at a time: the mark is still seen, and output matches the whole run.
        let mut fl = Filter::new();
        assert!(fl.write(b"\xff").unwrap().is_empty());
        assert!(matches!(fl.write(b"\xfe"), Err(FilterError::Utf16)));
    }

    /// The `markup_filter` fuzz target's find: once a neighbour was removed, a rewritten
    /// tag gave a valueless attribute the next one's odd name as its value.
    #[test]
    fn fuzz_find_rewritten_tags_keep_their_meaning() {
        let input = b"\x3c\x62\x0a\x0d\x3c\x0a\x00\x62\x09\x3d\x6f\xf2\x9d\x9d\x9d\x9d\x9d\x9d\x9d\x26\x9d\x9d\x9d\x9d\x9d\x62\x09\x3d\x6f\xf2\x9d\x9d\x2b\x3a\x3e\x62";
        let once = filter(input).unwrap();
        assert_eq!(filter(&once).unwrap(), once);
    }

    /// The second find: a tag removed for an odd attribute let the text before and
    /// after it join into a new tag (`<` + `<o =x>` + `v ...>`).
    #[test]
    fn fuzz_find_removed_tags_leave_no_join() {
        let input = b"\x3c\x3c\x6f\x95\x2f\x95\x2f\xcd\x37\x3e\x76\x0a\xff\xfe\x21\x00\x00\x00\x15\x11\x00\x00\x00\xef\x3e\x3c";
        let once = filter(input).unwrap();
        assert_eq!(filter(&once).unwrap(), once);
        let out = f("<<o =x>img src=http:evil.example>a<</o>img src=http:evil.example>");
        assert!(
            !out.contains("evil.example") || !out.contains("<img"),
            "{out}"
        );
    }

    /// Fed in pieces, a pattern split across chunks is still caught.
    #[test]
    fn chunk_boundaries_hide_nothing() {
        let doc = r#"<p>x</p><style>p{background:url(//evil.example/x)}</style><img src="//evil.example/y">"#;
        for size in 1..12 {
            let mut fl = Filter::new();
            let mut out = Vec::new();
            for c in doc.as_bytes().chunks(size) {
                out.extend(fl.write(c).unwrap());
            }
            out.extend(fl.end().unwrap());
            let out = String::from_utf8(out).unwrap();
            assert!(!out.contains("evil.example"), "chunks of {size}: {out}");
            assert!(out.starts_with("<p>x</p>"), "{out}");
        }
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any bytes: no panic.
        #[test]
        fn filter_never_panics(doc in proptest::collection::vec(
            prop_oneof![Just(b'<'), Just(b'>'), Just(b'"'), Just(b'\''), Just(b'='), Just(b'/'),
                        Just(b' '), Just(b'a'), Just(b':'), Just(b'&'), any::<u8>()], 0..300)) {
            let _ = filter(&doc);
        }

        /// Filtering filtered output changes nothing: nothing the filter let through (or
        /// made, by removing something) is what it would remove.
        #[test]
        fn filtering_is_idempotent(doc in proptest::collection::vec(
            prop_oneof![Just("<".to_string()), Just(">".to_string()), Just("/".to_string()),
                        Just("<script>".to_string()), Just("</script>".to_string()),
                        Just("<style>".to_string()), Just("</style>".to_string()),
                        Just("<!--".to_string()), Just("-->".to_string()), Just("<xmp>".to_string()),
                        Just("img src=//h ".to_string()), Just("url(".to_string()),
                        Just("<img ".to_string()), Just("\"".to_string()), Just("'".to_string()),
                        Just(" onerror=x".to_string()), Just("a".to_string()), Just(" ".to_string())], 0..40)) {
            let doc = doc.concat();
            if let Ok(once) = filter(doc.as_bytes()) {
                let twice = filter(&once).expect("filtered output filters");
                prop_assert_eq!(String::from_utf8_lossy(&twice), String::from_utf8_lossy(&once), "input {}", doc);
            }
        }

        #[test]
        fn outside_srcs_never_survive(pre in "([a-z]{1,5}(=\"[a-z ]{0,5}\"|='[a-z]{0,3}'|=[a-z]{1,3})? ){0,3}", host in "[a-z]{1,8}") {
            let doc = format!("<img {pre} src=\"http://{host}.evil/x\">");
            let out = filter(doc.as_bytes()).map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default();
            prop_assert!(!out.contains(".evil"), "{} -> {}", doc, out);
        }
    }
}
