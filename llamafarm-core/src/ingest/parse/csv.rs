//! CSV and TSV: one row section per record, `header: value` pairs.

use super::{utf8, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// CSV and TSV (`CSVParser_*`).
pub struct CsvParser;

impl Parser for CsvParser {
    fn name(&self) -> &'static str {
        "csv"
    }
    fn label(&self) -> &'static str {
        "CSV"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["csv"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["csv", "tsv"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        csv_rows(input.bytes, input.file_name)
    }
}

fn csv_rows(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    let text = utf8(bytes, name)?;
    let delim =
        if name.to_ascii_lowercase().ends_with(".tsv") || (text.lines().next().is_some_and(|l| l.contains('\t') && !l.contains(','))) { b'\t' } else { b',' };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).has_headers(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|e| Error::parse(format!("'{name}'"), e.to_string()))?.iter().map(|h| h.trim().to_string()).collect();
    let mut sections = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::parse(format!("'{name}'"), e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::ParseInput;

    #[test]
    fn rows_with_headers() {
        let d = CsvParser.parse(&ParseInput::new(b"name,age\nAda,36\nAlan,41\n", "p.csv")).unwrap();
        assert_eq!(d.sections[0].text, "name: Ada, age: 36");
        assert!(d.sections.iter().all(|s| s.is_row));
    }
}
