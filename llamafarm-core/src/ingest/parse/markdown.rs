//! Markdown: sections by ATX heading, code fences respected.

use super::{utf8, ParseInput, ParsedDoc, Parser, Section};
use crate::error::Result;

/// Markdown (`MarkdownParser_*`).
pub struct MarkdownParser;

impl Parser for MarkdownParser {
    fn name(&self) -> &'static str {
        "markdown"
    }
    fn label(&self) -> &'static str {
        "Markdown"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["markdown"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["md", "markdown", "mdown", "mkd", "mdx"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        markdown(&utf8(input.bytes, input.file_name)?)
    }
}

/// Sections by ATX heading (`#` .. `######`); text before the first heading is its own section.
pub fn markdown(src: &str) -> Result<ParsedDoc> {
    let mut sections = Vec::new();
    let mut cur = String::new();
    let mut heading: Option<String> = None;
    let mut in_code = false;
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_code = !in_code;
        }
        let is_heading = !in_code && t.starts_with('#') && {
            let hashes = t.chars().take_while(|c| *c == '#').count();
            hashes <= 6 && t[hashes..].starts_with([' ', '\t'])
        };
        if is_heading {
            if !cur.trim().is_empty() {
                sections.push(Section { text: cur.trim().to_string(), heading: heading.clone(), ..Default::default() });
            }
            cur.clear();
            heading = Some(t.trim_start_matches('#').trim().to_string());
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        sections.push(Section { text: cur.trim().to_string(), heading, ..Default::default() });
    }
    Ok(ParsedDoc { sections, parser: "markdown", ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_sections_and_code_fences() {
        let d = markdown("intro\n# One\ntext\n```\n# not a heading\n```\n## Two\nmore").unwrap();
        let heads: Vec<_> = d.sections.iter().map(|s| s.heading.clone()).collect();
        assert_eq!(heads, vec![None, Some("One".into()), Some("Two".into())]);
        assert!(d.sections[1].text.contains("# not a heading"));
    }
}
