//! Images (`ImageParser_OCR`, and PNG, JPEG, GIF, WebP, BMP and TIFF files under a
//! universal parser): the text OCR reads, one section per page.

use super::{ocr_pages, ParseInput, ParsedDoc, Parser};
use crate::error::{Error, Result};
use crate::vision::Vision;
use std::sync::Arc;

/// Images through OCR.
pub struct ImageParser {
    vision: Arc<Vision>,
}

impl ImageParser {
    /// Read images with `vision`'s engines.
    pub fn new(vision: Arc<Vision>) -> Self {
        Self { vision }
    }
}

impl Parser for ImageParser {
    fn name(&self) -> &'static str {
        "image_ocr"
    }
    fn label(&self) -> &'static str {
        "image (OCR)"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["image"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        if crate::vision::input::is_pdf(input.bytes) {
            return Err(Error::parse(format!("'{}'", input.file_name), "is a PDF: use a PDF parser"));
        }
        let pages = crate::vision::load_pages(input.bytes, input.file_name, 0)?;
        let n = pages.len() as u32;
        let mut doc = ocr_pages(&self.vision, &pages, &input.with_options(super::ParseOptions { force_ocr: true, ..input.options }), "image_ocr")?;
        doc.page_count = Some(n);
        Ok(doc)
    }
}
