//! Chunkers: sections of a parsed document -> chunks of about `chunk_size` characters.
//!
//! Strategies (the original's names): `characters` (fixed windows cut back to a
//! space, `chunk_overlap` between windows), `sentences`, `paragraphs` (greedy packing
//! up to `chunk_size`), `sections` (one chunk per heading section or page, large ones
//! split by paragraphs), `pages`, `rows` (table rows packed, header repeated), and
//! `semantic` (paragraph and sentence boundaries, packed; no boundary is cut mid-sentence
//! unless a sentence alone exceeds `max_chunk_size`). Chunks shorter than
//! `min_chunk_size` are merged into a neighbour instead of dropped.

use super::parse::{ParsedDoc, Section};

/// Chunking settings (from a parser's `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkConfig {
    /// Strategy name.
    pub strategy: String,
    /// Target characters per chunk.
    pub chunk_size: usize,
    /// Characters shared by consecutive `characters` windows.
    pub chunk_overlap: usize,
    /// Smaller chunks are merged into a neighbour.
    pub min_chunk_size: usize,
    /// Hard upper bound.
    pub max_chunk_size: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self { strategy: "sections".into(), chunk_size: 1000, chunk_overlap: 200, min_chunk_size: 50, max_chunk_size: 8000 }
    }
}

/// One chunk of text with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Text.
    pub text: String,
    /// Page of its start (PDF).
    pub page: Option<u32>,
    /// Heading it sits under.
    pub heading: Option<String>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Split into sentences at `.`, `!`, `?` followed by whitespace (and newlines).
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        cur.push(c);
        let end = matches!(c, '.' | '!' | '?' | '。') && it.peek().is_none_or(|n| n.is_whitespace());
        let para = c == '\n' && it.peek() == Some(&'\n');
        if end || para {
            let t = cur.trim().to_string();
            if !t.is_empty() {
                out.push(t);
            }
            cur.clear();
        }
    }
    let t = cur.trim().to_string();
    if !t.is_empty() {
        out.push(t);
    }
    out
}

fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// Fixed windows of `size` characters, cut back to the last space, overlapping.
fn windows(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let cs: Vec<char> = text.chars().collect();
    let size = size.max(1);
    let overlap = overlap.min(size / 2);
    let mut out = Vec::new();
    let mut start = 0;
    while start < cs.len() {
        let mut end = (start + size).min(cs.len());
        if end < cs.len() {
            if let Some(sp) = cs[start..end].iter().rposition(|c| c.is_whitespace()).filter(|p| *p > size / 2) {
                end = start + sp;
            }
        }
        let piece: String = cs[start..end].iter().collect::<String>().trim().to_string();
        if !piece.is_empty() {
            out.push(piece);
        }
        if end >= cs.len() {
            break;
        }
        start = if end > overlap { (end - overlap).max(start + 1) } else { end };
        // Start the next window at a word boundary.
        while start < cs.len() && start > 0 && !cs[start - 1].is_whitespace() && !cs[start].is_whitespace() && start < end {
            start += 1;
        }
    }
    out
}

/// Greedy packing of units up to `size`, splitting any unit larger than `max`.
fn pack(units: Vec<String>, size: usize, max: usize, sep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for u in units {
        let parts = if chars(&u) > max { windows(&u, size.min(max), 0) } else { vec![u] };
        for p in parts {
            if !cur.is_empty() && chars(&cur) + sep.len() + chars(&p) > size {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push_str(sep);
            }
            cur.push_str(&p);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Units of a long text: paragraphs, and sentences of any paragraph over `size`.
fn semantic_units(text: &str, size: usize) -> Vec<String> {
    let mut units = Vec::new();
    for p in paragraphs(text) {
        if chars(&p) > size {
            units.extend(sentences(&p));
        } else {
            units.push(p);
        }
    }
    units
}

fn split_section(s: &Section, cfg: &ChunkConfig) -> Vec<String> {
    let size = cfg.chunk_size.max(1);
    match cfg.strategy.as_str() {
        "characters" | "tokens" | "fixed" => windows(&s.text, size, cfg.chunk_overlap),
        "sentences" => pack(sentences(&s.text), size, cfg.max_chunk_size, " "),
        "paragraphs" | "email_sections" => pack(paragraphs(&s.text), size, cfg.max_chunk_size, "\n\n"),
        "sections" | "headings" | "pages" => {
            if chars(&s.text) <= cfg.max_chunk_size.max(size) {
                vec![s.text.clone()]
            } else {
                pack(semantic_units(&s.text, size), size, cfg.max_chunk_size, "\n\n")
            }
        }
        // semantic, code and anything else
        _ => pack(semantic_units(&s.text, size), size, cfg.max_chunk_size, "\n\n"),
    }
}

/// Chunk a parsed document.
pub fn chunk(doc: &ParsedDoc, cfg: &ChunkConfig) -> Vec<Chunk> {
    let size = cfg.chunk_size.max(1);
    let mut out: Vec<Chunk> = Vec::new();
    let rows = doc.sections.iter().all(|s| s.is_row) && !doc.sections.is_empty();
    if rows || cfg.strategy == "rows" {
        // Pack rows; repeat the header in every chunk.
        let header = doc.header.clone().filter(|h| !h.is_empty());
        let mut cur = String::new();
        for s in &doc.sections {
            if !cur.is_empty() && chars(&cur) + chars(&s.text) + 1 > size {
                out.push(Chunk { text: std::mem::take(&mut cur), page: None, heading: header.clone() });
            }
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(&s.text);
        }
        if !cur.is_empty() {
            out.push(Chunk { text: cur, page: None, heading: header });
        }
        return out;
    }
    let whole_doc = matches!(cfg.strategy.as_str(), "characters" | "tokens" | "fixed" | "sentences" | "paragraphs") && doc.sections.iter().all(|s| s.page.is_none());
    if whole_doc {
        // Sections only matter for section/page strategies: chunk the text as one stream.
        let merged = Section { text: doc.text(), ..Default::default() };
        for t in split_section(&merged, cfg) {
            out.push(Chunk { text: t, page: None, heading: None });
        }
    } else {
        for s in &doc.sections {
            for t in split_section(s, cfg) {
                out.push(Chunk { text: t, page: s.page, heading: s.heading.clone() });
            }
        }
    }
    merge_small(out, cfg.min_chunk_size, cfg.max_chunk_size)
}

/// Merge chunks under `min` characters into the previous (or next) chunk.
fn merge_small(chunks: Vec<Chunk>, min: usize, max: usize) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    for c in chunks {
        if c.text.trim().is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(prev) if (chars(&c.text) < min || chars(&prev.text) < min) && chars(&prev.text) + chars(&c.text) + 2 <= max.max(min) => {
                prev.text.push_str("\n\n");
                prev.text.push_str(&c.text);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> ParsedDoc {
        ParsedDoc { sections: vec![Section { text: text.into(), ..Default::default() }], ..Default::default() }
    }

    #[test]
    fn character_windows_overlap_and_respect_words() {
        let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau";
        let cfg = ChunkConfig { strategy: "characters".into(), chunk_size: 30, chunk_overlap: 10, min_chunk_size: 1, max_chunk_size: 100 };
        let cs = chunk(&doc(text), &cfg);
        assert!(cs.len() > 3);
        for c in &cs {
            assert!(c.text.chars().count() <= 30, "{c:?}");
            assert!(!c.text.starts_with(' '));
        }
        // Consecutive windows share text.
        let a: Vec<&str> = cs[0].text.split(' ').collect();
        assert!(cs[1].text.contains(a.last().unwrap()), "{cs:?}");
    }

    #[test]
    fn sentences_paragraphs_sections_and_small_merge() {
        let s = sentences("Dr. Smith arrived. He said hi! Did it work? Yes");
        assert_eq!(s.len(), 5, "{s:?}"); // "Dr." is a sentence end without an abbreviation list
        let text = "First paragraph here.\n\nSecond paragraph is here.\n\nThird.";
        let cfg = ChunkConfig { strategy: "paragraphs".into(), chunk_size: 50, chunk_overlap: 0, min_chunk_size: 10, max_chunk_size: 100 };
        let cs = chunk(&doc(text), &cfg);
        // Two paragraphs fit in 50 characters; the 6-character tail is merged, not dropped.
        assert_eq!(cs.len(), 1, "{cs:?}");
        assert!(cs[0].text.ends_with("Third."), "tiny tail merged: {cs:?}");
        let cfg = ChunkConfig { chunk_size: 30, ..cfg };
        assert_eq!(chunk(&doc(text), &cfg).len(), 2);

        let md = super::super::parse::markdown("# A\none two three\n# B\nfour five six").unwrap();
        let cfg = ChunkConfig { strategy: "sections".into(), chunk_size: 1000, chunk_overlap: 0, min_chunk_size: 1, max_chunk_size: 8000 };
        let cs = chunk(&md, &cfg);
        assert_eq!(cs.iter().map(|c| c.heading.clone().unwrap()).collect::<Vec<_>>(), vec!["A", "B"]);
    }

    #[test]
    fn huge_sections_are_split_and_rows_packed() {
        let big = "word ".repeat(5000);
        let cfg = ChunkConfig { strategy: "sections".into(), chunk_size: 1000, chunk_overlap: 0, min_chunk_size: 50, max_chunk_size: 2000 };
        let cs = chunk(&doc(&big), &cfg);
        assert!(cs.len() >= 12 && cs.iter().all(|c| c.text.chars().count() <= 2000));
        let rows = ParsedDoc {
            sections: (0..100).map(|i| Section { text: format!("id: {i}, name: row number {i}"), is_row: true, ..Default::default() }).collect(),
            header: Some("id, name".into()),
            ..Default::default()
        };
        let cs = chunk(&rows, &ChunkConfig { chunk_size: 300, ..Default::default() });
        assert!(cs.len() > 5 && cs.iter().all(|c| c.text.chars().count() <= 300 && c.heading.as_deref() == Some("id, name")));
    }
}
