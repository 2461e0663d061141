//! Parsers: bytes of a file -> sections of text (with page numbers, headings, rows).
//!
//! Each format is one [`Parser`] in its own module; a [`Registry`] holds them and
//! picks one by the `type` of a parser in `llamafarm.yaml` (`PDFParser_PyPDF2`,
//! `MarkdownParser_Python`, ...: the lower-cased name starts with one of the
//! parser's [`Parser::type_prefixes`]) or, for the universal types, by file
//! extension. A new format is a new module whose parser is added to
//! [`Registry::builtin`].

mod csv;
mod docx;
mod html;
mod image;
mod json;
mod markdown;
mod pdf;
mod registry;
mod text;
mod xlsx;

pub use self::csv::CsvParser;
pub use docx::DocxParser;
pub use html::{html, HtmlParser};
pub use image::ImageParser;
pub use json::JsonParser;
pub use markdown::{markdown, MarkdownParser};
pub use pdf::PdfParser;
pub use registry::Registry;
pub use text::TextParser;
pub use xlsx::XlsxParser;

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
    /// The OCR engine that read some of the pages, if any did.
    pub ocr_engine: Option<String>,
    /// OCR'd lines by 1-based page, when [`ParseOptions::ocr_boxes`] asks for them.
    pub ocr_lines: Vec<(u32, Vec<crate::vision::OcrLine>)>,
}

impl ParsedDoc {
    /// All text, sections separated by blank lines.
    pub fn text(&self) -> String {
        self.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n\n")
    }
}

/// One file to parse.
#[derive(Debug, Clone, Copy)]
pub struct ParseInput<'a> {
    /// The file's bytes.
    pub bytes: &'a [u8],
    /// Its name (for messages, and the `.tsv` delimiter).
    pub file_name: &'a str,
    /// What to extract, from the parser's config.
    pub options: ParseOptions,
}

impl<'a> ParseInput<'a> {
    /// `bytes` named `file_name`, with the default [`ParseOptions`].
    pub fn new(bytes: &'a [u8], file_name: &'a str) -> Self {
        Self { bytes, file_name, options: ParseOptions::default() }
    }

    /// The same input with `options`.
    pub fn with_options(self, options: ParseOptions) -> Self {
        Self { options, ..self }
    }
}

/// A document parser for one format.
pub trait Parser: Send + Sync {
    /// Our name, reported as [`ParsedDoc::parser`] (`pdf`, `markdown`, ...).
    fn name(&self) -> &'static str;
    /// How the unsupported-type message names it (`PDF`, `Excel`, ...).
    fn label(&self) -> &'static str;
    /// Lower-case prefixes of the config `type` names it answers to (`pdf` for
    /// `PDFParser_PyPDF2` and `PDFParser_LlamaIndex`).
    fn type_prefixes(&self) -> &'static [&'static str];
    /// Lower-case file extensions (no dot) it reads when a universal parser
    /// dispatches by file type.
    fn extensions(&self) -> &'static [&'static str];
    /// Parse one file.
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc>;
}

fn utf8(bytes: &[u8], name: &str) -> Result<String> {
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => {
            let s = String::from_utf8_lossy(bytes);
            let bad = s.chars().filter(|c| *c == '\u{FFFD}').count();
            if bad * 20 > s.chars().count().max(1) {
                Err(Error::parse(format!("'{name}'"), "not text (binary content)"))
            } else {
                Ok(s.into_owned())
            }
        }
    }
}

/// Collapse runs of spaces, keep paragraph breaks.
pub(crate) fn normalize_ws(s: &str) -> String {
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

/// What a parser's `config` asks to extract, with the original's keys: python-docx's
/// `extract_tables` (default on), `extract_headers` (on), `extract_footers` (off) and
/// `extract_comments` (off); LlamaIndex's `include_header_footer` (off) sets both.
/// OCR: `use_ocr` (default on: PDF pages without a text layer are OCR'd),
/// `ocr_engine` (`paddleocr` and the reference's other names, or `ocrs`),
/// `force_ocr` (OCR the images of pages that have a text layer too) and `ocr_boxes`
/// (each chunk's OCR lines with their boxes in its metadata).
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
    /// OCR pages without text.
    pub use_ocr: bool,
    /// The OCR engine.
    pub ocr_engine: crate::vision::EngineChoice,
    /// OCR pages that have a text layer as well.
    pub force_ocr: bool,
    /// Keep OCR lines and boxes for chunk metadata.
    pub ocr_boxes: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            tables: true,
            headers: true,
            footers: false,
            comments: false,
            use_ocr: true,
            ocr_engine: crate::vision::EngineChoice::PpOcr,
            force_ocr: false,
            ocr_boxes: false,
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
        o.use_ocr = b("use_ocr").or_else(|| b("ocr")).unwrap_or(o.use_ocr);
        o.force_ocr = b("force_ocr").unwrap_or(o.force_ocr);
        o.ocr_boxes = b("ocr_boxes").or_else(|| b("return_boxes")).unwrap_or(o.ocr_boxes);
        if let Some(e) = cfg.get("ocr_engine").and_then(|v| v.as_str()) {
            o.ocr_engine = crate::vision::EngineChoice::from_model(Some(e)).unwrap_or(o.ocr_engine);
        }
        o
    }
}

/// OCR `pages` into a document: one section per page with text.
fn ocr_pages(vision: &crate::vision::Vision, pages: &[crate::vision::Page], input: &ParseInput<'_>, parser: &'static str) -> Result<ParsedDoc> {
    let o = input.options;
    let opts = crate::vision::OcrOptions { model: Some(o.ocr_engine.model_name().into()), languages: Vec::new(), force_ocr: o.force_ocr };
    let (out, errors) = vision.ocr_pages(pages, &opts)?;
    for e in &errors {
        tracing::warn!(file = input.file_name, page = e.index + 1, "page not read: {}", e.reason);
    }
    let mut doc = ParsedDoc { parser, ..Default::default() };
    for p in out.pages {
        let page = p.index as u32 + 1;
        if p.source != "pdf-text-layer" {
            doc.ocr_engine = Some(p.source.clone());
        }
        if !p.text.trim().is_empty() {
            doc.sections.push(Section { text: p.text, page: Some(page), ..Default::default() });
        }
        if o.ocr_boxes && !p.lines.is_empty() {
            doc.ocr_lines.push((page, p.lines));
        }
    }
    if doc.sections.is_empty() {
        let why = errors.first().map(|e| format!(" (page {}: {})", e.index + 1, e.reason)).unwrap_or_default();
        return Err(Error::parse(format!("'{}'", input.file_name), format!("OCR found no text{why}")));
    }
    Ok(doc)
}

/// The characters an XML text event stands for, in the DOCX and XLSX parts: text and
/// CDATA as written, an entity or character reference (`&amp;`, `&#233;`) resolved, and an
/// unknown entity kept as written. Other events stand for none.
fn xml_text<'e>(ev: &'e quick_xml::events::Event<'_>) -> Option<std::borrow::Cow<'e, str>> {
    use quick_xml::events::Event;
    use std::borrow::Cow;
    match ev {
        Event::Text(t) => Some(t.xml10_content()),
        Event::CData(c) => Some(c.xml10_content()),
        Event::GeneralRef(r) if r.is_char_ref() => Some(r.resolve_char_ref().ok().flatten().map_or(Cow::Borrowed(""), |c| Cow::Owned(c.to_string()))),
        Event::GeneralRef(r) => Some(quick_xml::escape::resolve_predefined_entity(r).map_or_else(|| Cow::Owned(format!("&{};", &**r)), Cow::Borrowed)),
        _ => None,
    }
}

/// The next event of the DOCX or XLSX part `part` of `file`; `None` when it was text,
/// taken into `text` (given inside a text element).
fn xml_event<'x>(r: &mut quick_xml::Reader<&'x [u8]>, file: &str, part: &str, text: Option<&mut String>) -> Result<Option<quick_xml::events::Event<'x>>> {
    let ev = r.read_event().map_err(|e| Error::parse(format!("'{file}'"), format!("malformed {part}: {e}")))?;
    if let (Some(text), Some(s)) = (text, xml_text(&ev)) {
        text.push_str(&s);
        return Ok(None);
    }
    Ok(Some(ev))
}

/// Most bytes the parts of one DOCX or XLSX may decompress to, all together: a zip bomb
/// (a small file whose parts inflate to gigabytes) stops here, whatever sizes its
/// headers claim. The largest real document here (an 872-page handbook) inflates to 5.3 MiB.
pub(crate) const ZIP_BUDGET: u64 = 256 * 1024 * 1024;

/// The text of the zip entry `name`, charged to `budget` (see [`ZIP_BUDGET`]).
fn zip_entry(zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, file: &str, budget: &mut u64) -> Result<Option<String>> {
    use std::io::Read;
    let Ok(f) = zip.by_name(name) else { return Ok(None) };
    let too_large = || Error::parse(format!("'{file}'"), format!("its parts decompress to more than {} MiB (from {name} on)", ZIP_BUDGET >> 20));
    if f.size() > *budget {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(f.size() as usize);
    // Read one byte past the budget: a header that understates the size is caught too.
    f.take(*budget + 1).read_to_end(&mut buf).map_err(|e| Error::parse(format!("'{file}'"), format!("{name}: {e}")))?;
    if buf.len() as u64 > *budget {
        return Err(too_large());
    }
    *budget -= buf.len() as u64;
    String::from_utf8(buf).map(Some).map_err(|_| Error::parse(format!("'{file}'"), format!("{name} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip of `entries` (name, size in bytes of spaces), deflated.
    pub(crate) fn zip_of(entries: &[(&str, usize)]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).compression_level(Some(1)).large_file(true);
        let chunk = vec![b' '; 1 << 20];
        for (name, size) in entries {
            w.start_file(*name, opts).unwrap();
            let mut left = *size;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n]).unwrap();
                left -= n;
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_entries_are_charged_to_one_budget() {
        let bytes = zip_of(&[("a.xml", 600), ("b.xml", 600)]);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).unwrap();
        let mut budget = 1000;
        assert_eq!(zip_entry(&mut zip, "a.xml", "f.docx", &mut budget).unwrap().unwrap().len(), 600);
        assert_eq!(budget, 400);
        let e = zip_entry(&mut zip, "b.xml", "f.docx", &mut budget).unwrap_err().to_string();
        assert!(e.contains("decompress to more than") && e.contains("b.xml"), "{e}");
        assert!(zip_entry(&mut zip, "c.xml", "f.docx", &mut budget).unwrap().is_none());
    }

    #[test]
    fn zip_bombs_in_docx_and_xlsx_are_refused() {
        // 300 MiB of spaces deflate to about 3 MiB at level 1.
        let reg = Registry::global();
        for (kind, name, entry) in [("UniversalParser", "bomb.docx", "word/document.xml"), ("UniversalParser", "bomb.xlsx", "xl/worksheets/sheet1.xml")] {
            let bytes = zip_of(&[(entry, 300 << 20)]);
            assert!(bytes.len() < 8 << 20, "{} bytes", bytes.len());
            let e = reg.for_file(kind, name).and_then(|p| p.parse(&ParseInput::new(&bytes, name))).unwrap_err();
            assert!(e.to_string().contains("decompress to more than 256 MiB"), "{e}");
        }
    }

    #[test]
    fn binary_text_and_broken_containers_are_invalid() {
        let reg = Registry::global();
        let parse = |kind: &str, bytes: &[u8], name: &str| reg.for_file(kind, name).and_then(|p| p.parse(&ParseInput::new(bytes, name)));
        assert!(parse("TextParser_Python", &[0, 159, 146, 150, 0, 1, 2], "bin.txt").is_err());
        assert!(parse("UniversalParser", b"PK not a zip", "x.docx").is_err());
        assert!(parse("auto", b"{oops", "x.json").is_err());
    }
}
