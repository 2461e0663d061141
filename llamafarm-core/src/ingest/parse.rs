//! Parsers: bytes of a file -> sections of text (with page numbers, headings, rows).

use crate::error::{Error, Result};

/// A run of text with where it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// The text.
    pub text: String,
    /// 1-based page (PDF).
    pub page: Option<u32>,
    /// The heading this text sits under (Markdown, DOCX headings, HTML h1-h6).
    pub heading: Option<String>,
    /// A table row (CSV, JSONL records): rows are packed, never split.
    pub is_row: bool,
}

/// A parsed document.
#[derive(Debug, Clone, Default)]
pub struct ParsedDoc {
    /// Sections in reading order.
    pub sections: Vec<Section>,
    /// The parser that produced it (our name).
    pub parser: &'static str,
    /// Pages, when the format has them.
    pub page_count: Option<u32>,
    /// A header line to repeat in row chunks (CSV).
    pub header: Option<String>,
}

impl ParsedDoc {
    /// All text, sections separated by blank lines.
    pub fn text(&self) -> String {
        self.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n\n")
    }
}

/// Formats we parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text and source code.
    Text,
    /// Markdown (sections by heading).
    Markdown,
    /// PDF (pages).
    Pdf,
    /// HTML (visible text only).
    Html,
    /// CSV / TSV (rows).
    Csv,
    /// JSON / JSONL.
    Json,
    /// Word (paragraphs and tables from the XML).
    Docx,
    /// Excel workbooks (rows of every sheet, header repeated).
    Xlsx,
}

impl Format {
    /// From a file extension.
    pub fn from_ext(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "md" | "markdown" | "mdown" | "mkd" | "mdx" => Format::Markdown,
            "pdf" => Format::Pdf,
            "html" | "htm" | "xhtml" => Format::Html,
            "csv" | "tsv" => Format::Csv,
            "json" | "jsonl" | "ndjson" => Format::Json,
            "docx" | "docm" => Format::Docx,
            "xlsx" | "xlsm" => Format::Xlsx,
            "txt" | "text" | "log" | "rst" | "tex" | "asc" | "xml" | "yaml" | "yml" | "ini" | "cfg" | "conf" | "toml" | "py" | "js"
            | "ts" | "go" | "rs" | "java" | "c" | "h" | "cpp" | "hpp" | "cs" | "sh" | "sql" | "rb" | "php" | "swift" | "kt" | "scala"
            | "r" | "m" | "css" | "scss" => Format::Text,
            _ => return None,
        })
    }

    /// From a parser type name of the original (`PDFParser_PyPDF2`, `MarkdownParser_Python`, ...).
    /// `None` for universal parsers, which dispatch by file type.
    pub fn from_parser_type(t: &str) -> Option<Result<Self>> {
        let l = t.to_ascii_lowercase();
        if l.starts_with("universal") || l == "auto" || l == "directoryparser" {
            return None;
        }
        Some(if l.starts_with("pdf") {
            Ok(Format::Pdf)
        } else if l.starts_with("docx") || l.starts_with("word") {
            Ok(Format::Docx)
        } else if l.starts_with("excel") || l.starts_with("xlsx") {
            Ok(Format::Xlsx)
        } else if l.starts_with("markdown") {
            Ok(Format::Markdown)
        } else if l.starts_with("csv") {
            Ok(Format::Csv)
        } else if l.starts_with("html") {
            Ok(Format::Html)
        } else if l.starts_with("json") {
            Ok(Format::Json)
        } else if l.starts_with("text") || l.starts_with("code") {
            Ok(Format::Text)
        } else {
            Err(Error::Invalid(format!("parser type '{t}' is not supported (supported: PDF, DOCX, Excel, Markdown, HTML, CSV, JSON, text and Universal parsers)")))
        })
    }
}

/// Parse `bytes` as `format` with the default [`ParseOptions`].
pub fn parse(format: Format, bytes: &[u8], file_name: &str) -> Result<ParsedDoc> {
    parse_with(format, bytes, file_name, &ParseOptions::default())
}

/// Parse `bytes` as `format`.
pub fn parse_with(format: Format, bytes: &[u8], file_name: &str, opts: &ParseOptions) -> Result<ParsedDoc> {
    match format {
        Format::Text => text(bytes, file_name),
        Format::Markdown => markdown(&utf8(bytes, file_name)?),
        Format::Pdf => pdf(bytes, file_name),
        Format::Html => Ok(html(&String::from_utf8_lossy(bytes))),
        Format::Csv => csv_rows(bytes, file_name),
        Format::Json => json(bytes, file_name),
        Format::Docx => docx(bytes, file_name, opts),
        Format::Xlsx => xlsx(bytes, file_name),
    }
}

fn utf8(bytes: &[u8], name: &str) -> Result<String> {
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => {
            let s = String::from_utf8_lossy(bytes);
            let bad = s.chars().filter(|c| *c == '\u{FFFD}').count();
            if bad * 20 > s.chars().count().max(1) {
                Err(Error::Invalid(format!("'{name}' is not text (binary content)")))
            } else {
                Ok(s.into_owned())
            }
        }
    }
}

fn text(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    if bytes.iter().take(8192).filter(|b| **b == 0).count() > 0 {
        return Err(Error::Invalid(format!("'{name}' is not text (binary content)")));
    }
    let t = utf8(bytes, name)?;
    Ok(ParsedDoc { sections: vec![Section { text: t, ..Default::default() }], parser: "text", ..Default::default() })
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

fn pdf(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    if !bytes.starts_with(b"%PDF") && !bytes.windows(5).take(1024).any(|w| w == b"%PDF-") {
        return Err(Error::Invalid(format!("'{name}' is not a PDF")));
    }
    // pdf-extract panics on some malformed files; contain it.
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| Error::Invalid(format!("'{name}': the PDF could not be parsed (malformed)")))?
        .map_err(|e| {
            let msg = e.to_string();
            if msg.to_lowercase().contains("encrypt") || msg.to_lowercase().contains("password") {
                Error::Invalid(format!("'{name}' is encrypted: {msg}"))
            } else {
                Error::Invalid(format!("'{name}': the PDF could not be parsed: {msg}"))
            }
        })?;
    let n = pages.len() as u32;
    let sections: Vec<Section> = pages
        .into_iter()
        .enumerate()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(i, t)| Section { text: normalize_ws(&t), page: Some(i as u32 + 1), ..Default::default() })
        .collect();
    if sections.is_empty() {
        return Err(Error::Invalid(format!("'{name}': no extractable text (scanned PDF? OCR it first)")));
    }
    Ok(ParsedDoc { sections, parser: "pdf", page_count: Some(n), ..Default::default() })
}

/// Collapse runs of spaces, keep paragraph breaks.
fn normalize_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if l.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&l);
    }
    out
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

fn csv_rows(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    let text = utf8(bytes, name)?;
    let delim = if name.to_ascii_lowercase().ends_with(".tsv") || (text.lines().next().is_some_and(|l| l.contains('\t') && !l.contains(','))) {
        b'\t'
    } else {
        b','
    };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).has_headers(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|e| Error::Invalid(format!("'{name}': {e}")))?.iter().map(|h| h.trim().to_string()).collect();
    let mut sections = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::Invalid(format!("'{name}': {e}")))?;
        let row: Vec<String> = rec
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match headers.get(i) {
                Some(h) if !h.is_empty() => format!("{h}: {}", v.trim()),
                _ => v.trim().to_string(),
            })
            .collect();
        if !row.is_empty() {
            sections.push(Section { text: row.join(", "), is_row: true, ..Default::default() });
        }
    }
    Ok(ParsedDoc { sections, parser: "csv", header: Some(headers.join(", ")), ..Default::default() })
}

fn json(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    let text = utf8(bytes, name)?;
    let flatten = |v: &serde_json::Value| -> String {
        let mut parts = Vec::new();
        flatten_json(v, String::new(), &mut parts);
        parts.join("\n")
    };
    let values: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(e) => {
            // JSON Lines.
            let mut items = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                items.push(serde_json::from_str(line).map_err(|_| Error::Invalid(format!("'{name}': invalid JSON ({e}; line {} is not JSON either)", i + 1)))?);
            }
            items
        }
    };
    let many = values.len() > 1;
    let sections = values
        .iter()
        .map(|v| Section { text: flatten(v), is_row: many, ..Default::default() })
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    Ok(ParsedDoc { sections, parser: "json", ..Default::default() })
}

fn flatten_json(v: &serde_json::Value, prefix: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                flatten_json(x, if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(x, format!("{prefix}[{i}]"), out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push(if prefix.is_empty() { s.clone() } else { format!("{prefix}: {s}") }),
        other => out.push(if prefix.is_empty() { other.to_string() } else { format!("{prefix}: {other}") }),
    }
}

/// What a parser's `config` asks to extract, with the original's keys: python-docx's
/// `extract_tables` (default on), `extract_headers` (on), `extract_footers` (off) and
/// `extract_comments` (off); LlamaIndex's `include_header_footer` (off) sets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Table rows (DOCX).
    pub tables: bool,
    /// Page headers (DOCX `word/header*.xml`), as a first section.
    pub headers: bool,
    /// Page footers (DOCX `word/footer*.xml`), as a last section.
    pub footers: bool,
    /// Reviewer comments (DOCX `word/comments.xml`), as a last section.
    pub comments: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            tables: true,
            headers: true,
            footers: false,
            comments: false,
        }
    }
}

impl ParseOptions {
    /// From a parser's type and settings.
    pub fn from_config(kind: &str, cfg: &serde_json::Map<String, serde_json::Value>) -> Self {
        let b = |k: &str| cfg.get(k).and_then(|v| v.as_bool());
        let mut o = Self::default();
        if kind.to_ascii_lowercase().contains("llamaindex") {
            (o.headers, o.footers) = (false, false);
        }
        if let Some(v) = b("include_header_footer") {
            (o.headers, o.footers) = (v, v);
        }
        o.tables = b("extract_tables").unwrap_or(o.tables);
        o.headers = b("extract_headers").unwrap_or(o.headers);
        o.footers = b("extract_footers").unwrap_or(o.footers);
        o.comments = b("extract_comments").unwrap_or(o.comments);
        o
    }
}

/// Paragraphs and tables of `word/document.xml` (heading styles start sections), with
/// the page headers first and the footers and comments last as `opts` asks.
fn docx(bytes: &[u8], name: &str, opts: &ParseOptions) -> Result<ParsedDoc> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::Invalid(format!("'{name}' is not a DOCX (zip): {e}")))?;
    let xml = zip_entry(&mut zip, "word/document.xml", name)?
        .ok_or_else(|| Error::Invalid(format!("'{name}': no word/document.xml")))?;
    // Text of every part named `word/{prefix}N.xml`, each distinct paragraph once
    // (first-page, even and default headers often repeat each other).
    let mut parts = |prefix: &str| -> Result<Option<String>> {
        let mut names: Vec<String> = zip
            .file_names()
            .filter(|n| n.starts_with(&format!("word/{prefix}")) && n.ends_with(".xml"))
            .map(String::from)
            .collect();
        names.sort_by_key(|n| (n.len(), n.clone()));
        let mut seen = std::collections::HashSet::new();
        let mut paras = Vec::new();
        for part in names {
            let Some(x) = zip_entry(&mut zip, &part, name)? else {
                continue;
            };
            let mut secs = Vec::new();
            // A damaged header or footer loses only itself, not the document.
            if let Err(e) = docx_part(&x, name, &part, true, &mut secs) {
                tracing::warn!(file = name, error = %e, "skipping a DOCX part");
                continue;
            }
            for p in secs
                .iter()
                .flat_map(|s| s.text.split("\n\n"))
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                if seen.insert(p.to_string()) {
                    paras.push(p.to_string());
                }
            }
        }
        Ok((!paras.is_empty()).then(|| paras.join("\n\n")))
    };
    let mut sections: Vec<Section> = Vec::new();
    let header = if opts.headers { parts("header")? } else { None };
    let footer = if opts.footers { parts("footer")? } else { None };
    let comments = if opts.comments {
        parts("comments")?
    } else {
        None
    };
    if let Some(text) = header {
        sections.push(Section {
            text,
            heading: Some("Header".into()),
            ..Default::default()
        });
    }
    docx_part(&xml, name, "word/document.xml", opts.tables, &mut sections)?;
    for (text, heading) in [(footer, "Footer"), (comments, "Comments")] {
        if let Some(text) = text {
            sections.push(Section {
                text,
                heading: Some(heading.into()),
                ..Default::default()
            });
        }
    }
    Ok(ParsedDoc {
        sections,
        parser: "docx",
        ..Default::default()
    })
}

/// Sections of one WordprocessingML part (paragraphs; table rows as `a | b` lines when
/// `tables`, else skipped).
fn docx_part(
    xml: &str,
    name: &str,
    part: &str,
    tables: bool,
    sections: &mut Vec<Section>,
) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut heading: Option<String> = None;
    let mut cur = String::new(); // paragraphs of the current section
    let mut para = String::new();
    let mut para_style = String::new();
    let mut in_text = false;
    let mut cells: Vec<String> = Vec::new();
    let mut table_depth = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"tab" => para.push('\t'),
                b"br" | b"cr" => para.push('\n'),
                b"pStyle" => {
                    if let Some(a) = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"val")
                    {
                        para_style = String::from_utf8_lossy(&a.value).to_string();
                    }
                }
                b"tbl" => table_depth += 1,
                b"tr" => cells.clear(),
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                let s = t
                    .unescape()
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                para.push_str(&s);
            }
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let p = para.trim().to_string();
                    para.clear();
                    let style = std::mem::take(&mut para_style).to_ascii_lowercase();
                    if p.is_empty() {
                        continue;
                    }
                    if table_depth > 0 {
                        if tables {
                            cells.push(p);
                        }
                    } else if style.starts_with("heading") || style == "title" {
                        if !cur.trim().is_empty() {
                            sections.push(Section {
                                text: cur.trim().to_string(),
                                heading: heading.clone(),
                                ..Default::default()
                            });
                        }
                        cur = format!("{p}\n\n");
                        heading = Some(p);
                    } else {
                        cur.push_str(&p);
                        cur.push_str("\n\n");
                    }
                }
                b"tc" => {}
                b"tr" => {
                    if !cells.is_empty() {
                        cur.push_str(&cells.join(" | "));
                        cur.push('\n');
                        cells.clear();
                    }
                }
                b"tbl" => {
                    table_depth = table_depth.saturating_sub(1);
                    if tables {
                        cur.push('\n');
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Err(e) => return Err(Error::Invalid(format!("'{name}': malformed {part}: {e}"))),
            _ => {}
        }
    }
    if !cur.trim().is_empty() {
        sections.push(Section {
            text: cur.trim().to_string(),
            heading,
            ..Default::default()
        });
    }
    Ok(())
}

fn zip_entry(zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, file: &str) -> Result<Option<String>> {
    use std::io::Read;
    let Ok(mut f) = zip.by_name(name) else { return Ok(None) };
    if f.size() > 512 * 1024 * 1024 {
        return Err(Error::Invalid(format!("'{file}': {name} is too large")));
    }
    let mut s = String::new();
    f.read_to_string(&mut s).map_err(|e| Error::Invalid(format!("'{file}': {e}")))?;
    Ok(Some(s))
}

/// Rows of every worksheet (shared strings and inline strings resolved); the first
/// row of a sheet is its header, repeated as `header: value` in each row.
fn xlsx(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    use quick_xml::events::Event;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| Error::Invalid(format!("'{name}' is not an XLSX (zip): {e}")))?;
    let mut shared: Vec<String> = Vec::new();
    if let Some(xml) = zip_entry(&mut zip, "xl/sharedStrings.xml", name)? {
        let mut r = quick_xml::Reader::from_str(&xml);
        let (mut cur, mut in_t) = (String::new(), false);
        loop {
            match r.read_event() {
                Ok(Event::Start(e)) if e.local_name().as_ref() == b"t" => in_t = true,
                Ok(Event::Text(t)) if in_t => cur.push_str(&t.unescape().map(|c| c.into_owned()).unwrap_or_default()),
                Ok(Event::End(e)) if e.local_name().as_ref() == b"t" => in_t = false,
                Ok(Event::End(e)) if e.local_name().as_ref() == b"si" => shared.push(std::mem::take(&mut cur)),
                Ok(Event::Eof) => break,
                Err(e) => return Err(Error::Invalid(format!("'{name}': malformed sharedStrings.xml: {e}"))),
                _ => {}
            }
        }
    }
    let mut sheets: Vec<String> = (0..zip.len()).filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string())).filter(|n| n.starts_with("xl/worksheets/sheet") && n.ends_with(".xml")).collect();
    sheets.sort_by_key(|n| n.trim_start_matches("xl/worksheets/sheet").trim_end_matches(".xml").parse::<u32>().unwrap_or(0));
    let mut sections = Vec::new();
    for (si, sheet) in sheets.iter().enumerate() {
        let Some(xml) = zip_entry(&mut zip, sheet, name)? else { continue };
        let mut r = quick_xml::Reader::from_str(&xml);
        let (mut row, mut header): (Vec<String>, Option<Vec<String>>) = (Vec::new(), None);
        let (mut cell_type, mut val, mut in_v) = (String::new(), String::new(), false);
        loop {
            match r.read_event() {
                Ok(Event::Start(e)) => match e.local_name().as_ref() {
                    b"c" => {
                        cell_type = e.attributes().flatten().find(|a| a.key.local_name().as_ref() == b"t").map(|a| String::from_utf8_lossy(&a.value).to_string()).unwrap_or_default();
                        val.clear();
                    }
                    b"v" | b"t" => in_v = true,
                    _ => {}
                },
                Ok(Event::Text(t)) if in_v => val.push_str(&t.unescape().map(|c| c.into_owned()).unwrap_or_default()),
                Ok(Event::End(e)) => match e.local_name().as_ref() {
                    b"v" | b"t" => in_v = false,
                    b"c" => {
                        let v = if cell_type == "s" { val.trim().parse::<usize>().ok().and_then(|i| shared.get(i).cloned()).unwrap_or_default() } else { val.clone() };
                        row.push(v.trim().to_string());
                    }
                    b"row" => {
                        let cells = std::mem::take(&mut row);
                        if cells.iter().all(|c| c.is_empty()) {
                            continue;
                        }
                        match &header {
                            None => header = Some(cells),
                            Some(h) => {
                                let text = cells
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, v)| !v.is_empty())
                                    .map(|(i, v)| match h.get(i).filter(|x| !x.is_empty()) {
                                        Some(k) => format!("{k}: {v}"),
                                        None => v.clone(),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                sections.push(Section { text, is_row: true, heading: Some(format!("sheet {}", si + 1)), ..Default::default() });
                            }
                        }
                    }
                    _ => {}
                },
                Ok(Event::Eof) => break,
                Err(e) => return Err(Error::Invalid(format!("'{name}': malformed {sheet}: {e}"))),
                _ => {}
            }
        }
    }
    Ok(ParsedDoc { sections, parser: "xlsx", ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlsx_rows_with_shared_strings() {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file("xl/sharedStrings.xml", o).unwrap();
            z.write_all(br#"<sst><si><t>name</t></si><si><t>qty</t></si><si><t>apples &amp; pears</t></si></sst>"#).unwrap();
            z.start_file("xl/worksheets/sheet1.xml", o).unwrap();
            z.write_all(br#"<worksheet><sheetData><row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row><row><c t="s"><v>2</v></c><c><v>12</v></c></row><row><c t="inlineStr"><is><t>plums</t></is></c><c><v>3</v></c></row></sheetData></worksheet>"#).unwrap();
            z.finish().unwrap();
        }
        let d = parse(Format::Xlsx, buf.get_ref(), "stock.xlsx").unwrap();
        let rows: Vec<&str> = d.sections.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(rows, vec!["name: apples & pears, qty: 12", "name: plums, qty: 3"]);
        assert!(parse(Format::Xlsx, b"nope", "x.xlsx").is_err());
    }

    #[test]
    fn html_is_visible_text_only() {
        let d = html("<html><head><title>t</title><script>var x = 1;</script></head><body><h1>Title &amp; more</h1><p>Hello <b>world</b>&nbsp;!</p><style>p{}</style><!-- hidden --><table><tr><td>a</td><td>b</td></tr></table></body></html>");
        let t = d.text();
        assert!(t.contains("Title & more") && t.contains("Hello world !") && t.contains("a | b"), "{t}");
        assert!(!t.contains("var x") && !t.contains("p{}") && !t.contains("hidden") && !t.contains('<'), "{t}");
        assert_eq!(d.sections.last().unwrap().heading.as_deref(), Some("Title & more"));
    }

    #[test]
    fn markdown_sections_and_code_fences() {
        let d = markdown("intro\n# One\ntext\n```\n# not a heading\n```\n## Two\nmore").unwrap();
        let heads: Vec<_> = d.sections.iter().map(|s| s.heading.clone()).collect();
        assert_eq!(heads, vec![None, Some("One".into()), Some("Two".into())]);
        assert!(d.sections[1].text.contains("# not a heading"));
    }

    #[test]
    fn csv_json_and_junk() {
        let d = parse(Format::Csv, b"name,age\nAda,36\nAlan,41\n", "p.csv").unwrap();
        assert_eq!(d.sections[0].text, "name: Ada, age: 36");
        assert!(d.sections.iter().all(|s| s.is_row));
        let d = parse(Format::Json, b"{\"a\": {\"b\": 1}, \"c\": [\"x\"]}", "x.json").unwrap();
        assert_eq!(d.sections[0].text, "a.b: 1\nc[0]: x");
        let d = parse(Format::Json, b"{\"q\": 1}\n{\"q\": 2}\n", "x.jsonl").unwrap();
        assert_eq!(d.sections.len(), 2);
        assert!(parse(Format::Text, &[0, 159, 146, 150, 0, 1, 2], "bin.txt").is_err());
        assert!(parse(Format::Pdf, b"not a pdf", "x.pdf").is_err());
        assert!(parse(Format::Docx, b"PK not a zip", "x.docx").is_err());
        assert!(parse(Format::Json, b"{oops", "x.json").is_err());
    }

    fn docx_with(parts: &[(&str, &str)]) -> Vec<u8> {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, body) in parts {
            z.start_file(*name, o).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn docx_headers_footers_comments_and_tables_follow_the_options() {
        let w =
            |body: &str| format!(r#"<w:document xmlns:w="w"><w:body>{body}</w:body></w:document>"#);
        let p = |t: &str| format!("<w:p><w:r><w:t>{t}</w:t></w:r></w:p>");
        let doc = w(&format!(
            "{}<w:tbl><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr></w:tbl>",
            p("Body text."),
            p("cell a"),
            p("cell b")
        ));
        let hdr = format!("<w:hdr>{}</w:hdr>", p("ACME Confidential"));
        let bytes = docx_with(&[
            ("word/document.xml", &doc),
            ("word/header1.xml", &hdr),
            ("word/header2.xml", &hdr), // a repeat (first-page header) appears once
            (
                "word/footer1.xml",
                &format!("<w:ftr>{}</w:ftr>", p("Page footer")),
            ),
            (
                "word/comments.xml",
                &format!(
                    "<w:comments><w:comment>{}</w:comment></w:comments>",
                    p("Reviewer note")
                ),
            ),
        ]);
        let all = |d: &ParsedDoc| {
            d.sections
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        // python-docx defaults: headers and tables on, footers and comments off.
        let d = parse(Format::Docx, &bytes, "x.docx").unwrap();
        assert_eq!(d.sections[0].heading.as_deref(), Some("Header"));
        assert_eq!(d.sections[0].text, "ACME Confidential");
        assert!(all(&d).contains("cell a | cell b"));
        assert!(!all(&d).contains("Page footer") && !all(&d).contains("Reviewer note"));
        let cfg = |v: serde_json::Value| v.as_object().unwrap().clone();
        let o = ParseOptions::from_config(
            "DocxParser_PythonDocx",
            &cfg(
                serde_json::json!({"extract_footers": true, "extract_comments": true, "extract_tables": false}),
            ),
        );
        let d = parse_with(Format::Docx, &bytes, "x.docx", &o).unwrap();
        let t = all(&d);
        assert!(
            t.contains("Page footer") && t.contains("Reviewer note") && t.contains("Body text."),
            "{t}"
        );
        assert!(!t.contains("cell a"), "tables off: {t}");
        assert_eq!(t.matches("ACME Confidential").count(), 1);
        assert_eq!(
            d.sections.last().unwrap().heading.as_deref(),
            Some("Comments")
        );
        // LlamaIndex's parser: headers and footers only with include_header_footer.
        let li = ParseOptions::from_config("DocxParser_LlamaIndex", &Default::default());
        assert!(!all(&parse_with(Format::Docx, &bytes, "x.docx", &li).unwrap()).contains("ACME"));
        let li = ParseOptions::from_config(
            "DocxParser_LlamaIndex",
            &cfg(serde_json::json!({"include_header_footer": true})),
        );
        let t = all(&parse_with(Format::Docx, &bytes, "x.docx", &li).unwrap());
        assert!(t.contains("ACME") && t.contains("Page footer"));
        // A malformed header loses only itself; a malformed body is an error naming the part.
        let bad = docx_with(&[
            ("word/document.xml", &doc),
            ("word/header1.xml", "<w:hdr><w:p></w:hdr>"),
        ]);
        let d = parse(Format::Docx, &bad, "x.docx").unwrap();
        assert!(all(&d).contains("Body text.") && d.sections[0].heading.is_none());
        let bad = docx_with(&[("word/document.xml", "<w:document><w:body><w:p></w:body>")]);
        let e = parse(Format::Docx, &bad, "x.docx").unwrap_err().to_string();
        assert!(e.contains("document.xml"), "{e}");
    }

}
