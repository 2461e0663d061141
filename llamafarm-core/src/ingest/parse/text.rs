//! Plain text and source code: the file as one section, refused when binary.

use super::{utf8, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// Plain text and source code (`TextParser_*`, `CodeParser_*`).
pub struct TextParser;

impl Parser for TextParser {
    fn name(&self) -> &'static str {
        "text"
    }
    fn label(&self) -> &'static str {
        "text"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["text", "code"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &[
            "txt", "text", "log", "rst", "tex", "asc", "xml", "yaml", "yml", "ini", "cfg", "conf", "toml", "py", "js", "ts", "go", "rs", "java", "c", "h", "cpp",
            "hpp", "cs", "sh", "sql", "rb", "php", "swift", "kt", "scala", "r", "m", "css", "scss",
        ]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        text(input.bytes, input.file_name)
    }
}

fn text(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    if bytes.iter().take(8192).filter(|b| **b == 0).count() > 0 {
        return Err(Error::parse(format!("'{name}'"), "not text (binary content)"));
    }
    let t = utf8(bytes, name)?;
    Ok(ParsedDoc { sections: vec![Section { text: t, ..Default::default() }], parser: "text", ..Default::default() })
}
