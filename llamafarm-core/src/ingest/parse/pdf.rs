//! PDF: the text of each page (pdf-extract), whitespace normalised. With OCR (the
//! default when the registry has an OCR engine, `use_ocr: false` turns it off),
//! pages without a text layer are read from the images they draw.

use super::{normalize_ws, ocr_pages, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};
use crate::vision::Vision;
use std::sync::Arc;

/// PDF (`PDFParser_*`).
#[derive(Default)]
pub struct PdfParser {
    ocr: Option<Arc<Vision>>,
}

impl PdfParser {
    /// Text layers only: a page without one is skipped (a file with none fails).
    pub fn text_only() -> Self {
        Self { ocr: None }
    }

    /// Pages without a text layer are OCR'd with `vision`.
    pub fn with_ocr(vision: Arc<Vision>) -> Self {
        Self { ocr: Some(vision) }
    }
}

impl Parser for PdfParser {
    fn name(&self) -> &'static str {
        "pdf"
    }
    fn label(&self) -> &'static str {
        "PDF"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["pdf"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pdf"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        match (&self.ocr, input.options.use_ocr) {
            (Some(v), true) => ocr_pdf(v, input),
            _ => pdf(input.bytes, input.file_name),
        }
    }
}

fn pdf(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    if !crate::vision::input::is_pdf(bytes) {
        return Err(Error::parse(format!("'{name}'"), "not a PDF"));
    }
    // pdf-extract panics on some malformed files; contain it.
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| Error::parse(format!("'{name}'"), "malformed PDF"))?
        .map_err(|e| {
            let msg = e.to_string();
            if msg.to_lowercase().contains("encrypt") || msg.to_lowercase().contains("password") {
                Error::parse(format!("'{name}'"), format!("the PDF is encrypted: {msg}"))
            } else {
                Error::parse(format!("'{name}'"), msg)
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
        return Err(Error::parse(format!("'{name}'"), "no extractable text (a scanned PDF: turn on OCR with use_ocr: true)"));
    }
    Ok(ParsedDoc { sections, parser: "pdf", page_count: Some(n), ..Default::default() })
}

fn ocr_pdf(vision: &Vision, input: &ParseInput<'_>) -> Result<ParsedDoc> {
    let name = input.file_name;
    if !crate::vision::input::is_pdf(input.bytes) {
        return Err(Error::parse(format!("'{name}'"), "not a PDF"));
    }
    let pages = crate::vision::load_pages(input.bytes, name, 0)?;
    let n = pages.len() as u32;
    let mut doc = ocr_pages(vision, &pages, input, "pdf")?;
    doc.page_count = Some(n);
    if doc.sections.is_empty() {
        return Err(Error::parse(format!("'{name}'"), "no text found: no page has a text layer, and OCR read nothing from the page images"));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::ParseInput;

    #[test]
    fn not_a_pdf_is_invalid() {
        assert!(PdfParser::text_only().parse(&ParseInput::new(b"not a pdf", "x.pdf")).is_err());
    }
}
