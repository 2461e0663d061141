//! JSON and JSON Lines: each value flattened to `path: value` lines; several
//! values are rows.

use super::{utf8, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// JSON and JSON Lines (`JSONParser_*`).
pub struct JsonParser;

impl Parser for JsonParser {
    fn name(&self) -> &'static str {
        "json"
    }
    fn label(&self) -> &'static str {
        "JSON"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["json"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["json", "jsonl", "ndjson"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        json(input.bytes, input.file_name)
    }
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
                items.push(
                    serde_json::from_str(line).map_err(|_| Error::parse(format!("'{name}'"), format!("invalid JSON ({e}; line {} is not JSON either)", i + 1)))?,
                );
            }
            items
        }
    };
    let many = values.len() > 1;
    let sections = values.iter().map(|v| Section { text: flatten(v), is_row: many, ..Default::default() }).filter(|s| !s.text.trim().is_empty()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::ParseInput;

    #[test]
    fn objects_lines_and_junk() {
        let p = |b: &[u8], name: &str| JsonParser.parse(&ParseInput::new(b, name));
        let d = p(b"{\"a\": {\"b\": 1}, \"c\": [\"x\"]}", "x.json").unwrap();
        assert_eq!(d.sections[0].text, "a.b: 1\nc[0]: x");
        let d = p(b"{\"q\": 1}\n{\"q\": 2}\n", "x.jsonl").unwrap();
        assert_eq!(d.sections.len(), 2);
        assert!(p(b"{oops", "x.json").is_err());
    }
}
