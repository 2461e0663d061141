//! PDF: the text of each page (pdf-extract), whitespace normalised.

use super::{normalize_ws, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// PDF (`PDFParser_*`).
pub struct PdfParser;

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
        pdf(input.bytes, input.file_name)
    }
}

fn pdf(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    if !bytes.starts_with(b"%PDF") && !bytes.windows(5).take(1024).any(|w| w == b"%PDF-") {
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
        return Err(Error::parse(format!("'{name}'"), "no extractable text (scanned PDF? OCR it first)"));
    }
    Ok(ParsedDoc { sections, parser: "pdf", page_count: Some(n), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::ParseInput;

    #[test]
    fn not_a_pdf_is_invalid() {
        assert!(PdfParser.parse(&ParseInput::new(b"not a pdf", "x.pdf")).is_err());
    }
}
