//! HTML: the visible text, headings starting sections, entities decoded.

use super::{normalize_ws, ParseInput, ParsedDoc, Parser, Section};
use crate::error::Result;

/// HTML (`HTMLParser_*`).
pub struct HtmlParser;

impl Parser for HtmlParser {
    fn name(&self) -> &'static str {
        "html"
    }
    fn label(&self) -> &'static str {
        "HTML"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["html"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["html", "htm", "xhtml"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        Ok(html(&String::from_utf8_lossy(input.bytes)))
    }
}

/// Visible text of an HTML page: no tags, scripts, styles or comments; block
/// elements become line breaks; headings start sections; entities are decoded.
pub fn html(src: &str) -> ParsedDoc {
    let mut sections: Vec<Section> = Vec::new();
    let mut cur = String::new();
    let mut heading: Option<String> = None;
    let mut in_heading: Option<String> = None;
    let mut skip_until: Option<&'static str> = None;
    let bytes = src.as_bytes();
    let mut i = 0;
    let flush = |cur: &mut String, heading: &Option<String>, sections: &mut Vec<Section>| {
        let t = normalize_ws(cur);
        if !t.is_empty() {
            sections.push(Section { text: t, heading: heading.clone(), ..Default::default() });
        }
        cur.clear();
    };
    while i < bytes.len() {
        if let Some(end) = skip_until {
            match src[i..].to_ascii_lowercase().find(end) {
                Some(p) => {
                    i += p + end.len();
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if src[i..].starts_with("<!--") {
            skip_until = Some("-->");
            i += 4;
            continue;
        }
        if bytes[i] == b'<' {
            let Some(close) = src[i..].find('>') else { break };
            let tag = &src[i + 1..i + close];
            i += close + 1;
            let lower = tag.trim().to_ascii_lowercase();
            let name: String = lower.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let closing = lower.starts_with('/');
            match name.as_str() {
                "script" | "style" | "noscript" | "template" | "svg" | "head" if !closing && !lower.ends_with('/') => {
                    skip_until = Some(match name.as_str() {
                        "script" => "</script>",
                        "style" => "</style>",
                        "noscript" => "</noscript>",
                        "template" => "</template>",
                        "svg" => "</svg>",
                        _ => "</head>",
                    });
                }
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    if closing {
                        if let Some(h) = in_heading.take() {
                            let h = normalize_ws(&h);
                            cur.push_str(&h);
                            cur.push('\n');
                            heading = Some(h);
                        }
                    } else {
                        flush(&mut cur, &heading, &mut sections);
                        in_heading = Some(String::new());
                    }
                }
                "br" | "p" | "div" | "li" | "tr" | "table" | "section" | "article" | "ul" | "ol" | "blockquote" | "pre" | "hr" | "dt" | "dd" => {
                    cur.push('\n');
                    if name == "p" || name == "div" || name == "table" {
                        cur.push('\n');
                    }
                }
                "td" | "th" if closing => cur.push_str(" | "),
                _ => {}
            }
            continue;
        }
        let next = src[i..].find('<').map(|p| i + p).unwrap_or(bytes.len());
        let text = decode_entities(&src[i..next]);
        match in_heading.as_mut() {
            Some(h) => h.push_str(&text),
            None => cur.push_str(&text),
        }
        i = next;
    }
    flush(&mut cur, &heading, &mut sections);
    ParsedDoc { sections, parser: "html", ..Default::default() }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let after = &rest[p..];
        let end = after.find(';').filter(|e| *e <= 10);
        let Some(end) = end else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let ent = &after[1..end];
        let rep = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" | "#39" => Some('\''),
            "nbsp" | "#160" => Some(' '),
            "mdash" => Some('—'),
            "ndash" => Some('–'),
            "hellip" => Some('…'),
            "rsquo" => Some('’'),
            "lsquo" => Some('‘'),
            "rdquo" => Some('”'),
            "ldquo" => Some('“'),
            "copy" => Some('©'),
            "reg" => Some('®'),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32),
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match rep {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_visible_text_only() {
        let d = html("<html><head><title>t</title><script>var x = 1;</script></head><body><h1>Title &amp; more</h1><p>Hello <b>world</b>&nbsp;!</p><style>p{}</style><!-- hidden --><table><tr><td>a</td><td>b</td></tr></table></body></html>");
        let t = d.text();
        assert!(t.contains("Title & more") && t.contains("Hello world !") && t.contains("a | b"), "{t}");
        assert!(!t.contains("var x") && !t.contains("p{}") && !t.contains("hidden") && !t.contains('<'), "{t}");
        assert_eq!(d.sections.last().unwrap().heading.as_deref(), Some("Title & more"));
    }
}
