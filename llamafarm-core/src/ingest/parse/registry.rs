//! The parsers by config type name and by file extension.

use super::{CsvParser, DocxParser, HtmlParser, ImageParser, JsonParser, MarkdownParser, Parser, PdfParser, TextParser, XlsxParser};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::OnceLock;

/// Parsers, looked up by the `type` names of `llamafarm.yaml` and by file extension.
pub struct Registry {
    parsers: Vec<Box<dyn Parser>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.parsers.iter().map(|p| p.name())).finish()
    }
}

impl Registry {
    /// No parsers.
    pub fn empty() -> Self {
        Self { parsers: Vec::new() }
    }

    /// Every built-in parser that needs no model (no OCR: PDFs are read from their
    /// text layer, images are not read).
    pub fn builtin() -> Self {
        Self::builtin_with(None)
    }

    /// Every built-in parser, with OCR by `vision` for images and scanned PDF pages.
    pub fn with_ocr(vision: std::sync::Arc<crate::vision::Vision>) -> Self {
        Self::builtin_with(Some(vision))
    }

    fn builtin_with(vision: Option<std::sync::Arc<crate::vision::Vision>>) -> Self {
        let mut r = Self::empty();
        match vision {
            Some(v) => {
                r.register(PdfParser::with_ocr(v.clone()));
                r.register(ImageParser::new(v));
            }
            None => r.register(PdfParser::text_only()),
        }
        r.register(DocxParser);
        r.register(XlsxParser);
        r.register(MarkdownParser);
        r.register(HtmlParser);
        r.register(CsvParser);
        r.register(JsonParser);
        r.register(TextParser);
        r
    }

    /// The built-in parsers, built once.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::builtin)
    }

    /// Add a parser; earlier registrations win where type prefixes or extensions overlap.
    pub fn register(&mut self, parser: impl Parser + 'static) {
        self.parsers.push(Box::new(parser));
    }

    /// The parser a config type name selects. `None` for the universal types
    /// (`Universal*`, `auto`, `DirectoryParser`), which dispatch by file type; an
    /// unknown type is `Error::Invalid`.
    pub fn for_type(&self, t: &str) -> Option<Result<&dyn Parser>> {
        let l = t.to_ascii_lowercase();
        if l.starts_with("universal") || l == "auto" || l == "directoryparser" {
            return None;
        }
        Some(self.parsers.iter().find(|p| p.type_prefixes().iter().any(|pre| l.starts_with(pre))).map(|p| p.as_ref()).ok_or_else(|| {
            let labels: Vec<&str> = self.parsers.iter().map(|p| p.label()).collect();
            Error::invalid("parser type", format!("'{t}' is not supported (supported: {} and Universal parsers)", labels.join(", ")))
        }))
    }

    /// The parser for a file extension (any case, no dot).
    pub fn for_extension(&self, ext: &str) -> Option<&dyn Parser> {
        let l = ext.to_ascii_lowercase();
        self.parsers.iter().find(|p| p.extensions().contains(&l.as_str())).map(|p| p.as_ref())
    }

    /// The parser a config type uses for `file_name`: the type's own, or for a
    /// universal type the one for the file's extension.
    pub fn for_file(&self, kind: &str, file_name: &str) -> Result<&dyn Parser> {
        match self.for_type(kind) {
            Some(r) => r,
            None => {
                let ext = Path::new(file_name).extension().and_then(|e| e.to_str()).unwrap_or("");
                self.for_extension(ext).ok_or_else(|| Error::parse(format!("'{file_name}'"), format!("no parser for '{file_name}' (unknown file type '.{ext}')")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_extensions_pick_the_parser() {
        let r = Registry::global();
        let by_type = |t: &str| r.for_type(t).map(|p| p.map(|p| p.name()));
        assert_eq!(by_type("PDFParser_PyPDF2").unwrap().unwrap(), "pdf");
        assert_eq!(by_type("PDFParser_LlamaIndex").unwrap().unwrap(), "pdf");
        assert_eq!(by_type("MarkdownParser_Python").unwrap().unwrap(), "markdown");
        assert_eq!(by_type("WordParser_X").unwrap().unwrap(), "docx");
        assert_eq!(by_type("ExcelParser_Pandas").unwrap().unwrap(), "xlsx");
        assert_eq!(by_type("CodeParser_Tree").unwrap().unwrap(), "text");
        assert!(by_type("UniversalParser").is_none() && by_type("auto").is_none() && by_type("DirectoryParser").is_none());
        let e = by_type("ImageParser_OCR").unwrap().unwrap_err().to_string();
        assert!(e.contains("supported: PDF, DOCX, Excel, Markdown, HTML, CSV, JSON, text and Universal parsers"), "{e}");
        assert_eq!(r.for_extension("MD").map(|p| p.name()), Some("markdown"));
        assert_eq!(r.for_extension("tsv").map(|p| p.name()), Some("csv"));
        assert_eq!(r.for_extension("rs").map(|p| p.name()), Some("text"));
        assert!(r.for_extension("png").is_none());
        assert_eq!(r.for_file("UniversalParser", "a/b.HTM").unwrap().name(), "html");
        assert_eq!(r.for_file("PDFParser_PyPDF2", "notes.txt").unwrap().name(), "pdf");
        let e = r.for_file("auto", "photo.png").err().unwrap().to_string();
        assert!(e.contains("no parser for 'photo.png' (unknown file type '.png')"), "{e}");
    }

    #[test]
    fn a_registered_parser_plugs_in() {
        struct Upper;
        impl Parser for Upper {
            fn name(&self) -> &'static str {
                "upper"
            }
            fn label(&self) -> &'static str {
                "Upper"
            }
            fn type_prefixes(&self) -> &'static [&'static str] {
                &["upper"]
            }
            fn extensions(&self) -> &'static [&'static str] {
                &["up"]
            }
            fn parse(&self, input: &super::super::ParseInput<'_>) -> Result<super::super::ParsedDoc> {
                let text = String::from_utf8_lossy(input.bytes).to_uppercase();
                Ok(super::super::ParsedDoc { sections: vec![super::super::Section { text, ..Default::default() }], parser: "upper", ..Default::default() })
            }
        }
        let mut r = Registry::builtin();
        r.register(Upper);
        let p = r.for_file("auto", "x.up").unwrap();
        assert_eq!(p.parse(&super::super::ParseInput::new(b"hi", "x.up")).unwrap().text(), "HI");
        assert_eq!(r.for_type("UpperParser_Test").unwrap().unwrap().name(), "upper");
        assert_eq!(r.for_file("auto", "x.md").unwrap().name(), "markdown");
    }
}
