//! Document extraction with the models that run here: OCR text with its layout, then
//! the local LLM or the embedding model.
//!
//! - `extraction`: key/value fields. Without a schema, the page's own labelled rows
//!   (`Total: 9.99`, or a label and a value on one row) become fields, each with its
//!   OCR line's confidence and box. With `schema` (a JSON schema's `properties`, or a
//!   list of keys), the local LLM fills every key from the page text in one answer,
//!   decoded under a grammar so that it is always a JSON object with exactly those keys
//!   ([`answer_schema`]).
//! - `vqa`: each prompt is answered by the local LLM from the page text.
//! - `classification`: the labels in `prompts` are ranked by embedding similarity to
//!   the page text (all-MiniLM-L6-v2 by default); scores are a softmax over the
//!   similarities.
//!
//! An LLM answer's confidence is the OCR confidence of the line it was found on
//! when the answer appears in the page text, else half the page's mean confidence
//! (the answer is not grounded in what was read).
//!
//! Donut and LayoutLM model ids are accepted: their weights cannot be fetched here, so
//! the request runs this pipeline and the output says so ([`ExtractOutput::note`]).

use super::{OcrLine, OcrPage};
use crate::error::{Error, Result};
use serde_json::Value;

/// What to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractTask {
    /// Key/value fields.
    Extraction,
    /// Questions answered.
    Vqa,
    /// One label of the given ones.
    Classification,
}

impl ExtractTask {
    /// Parse `extraction`, `vqa` or `classification` (default `extraction`).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("extraction") | Some("extract") => Ok(Self::Extraction),
            Some("vqa") | Some("qa") | Some("question_answering") => Ok(Self::Vqa),
            Some("classification") | Some("classify") => Ok(Self::Classification),
            Some(other) => Err(Error::InvalidField { field: "task".into(), reason: format!("'{other}' is not a task (use extraction, vqa or classification)") }),
        }
    }
}

/// One extracted field.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExtractField {
    /// The key (a label, `question`/`answer`, or `label`).
    pub key: String,
    /// The value.
    pub value: String,
    /// 0..1 (see the module docs).
    pub confidence: f32,
    /// Where on the page, when known: left, top, right, bottom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
}

/// One page's extraction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExtractedPage {
    /// 0-based page index.
    pub index: usize,
    /// The answer text (vqa: the answers, one per line; classification: the label;
    /// extraction: `key: value` lines).
    pub text: String,
    /// Mean field confidence.
    pub confidence: f32,
    /// The fields.
    pub fields: Vec<ExtractField>,
    /// Classification: every label's score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_scores: Option<serde_json::Map<String, Value>>,
}

/// The result of an extraction request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractOutput {
    /// One per page.
    pub pages: Vec<ExtractedPage>,
    /// The task that ran.
    pub task: ExtractTask,
    /// What ran: `ocr+layout`, `ocr+llm` (questions), `ocr+llm+json` (fields under a
    /// schema), `ocr+embeddings`.
    pub pipeline: String,
    /// The OCR engine.
    pub engine: String,
    /// The LLM or embedding model used, if any.
    pub model_used: Option<String>,
    /// Set when the requested model is not available and this pipeline ran instead.
    pub note: Option<String>,
}

/// Labelled rows of a page: `label: value` lines, and rows made of a text segment and
/// a value segment (a segment with a digit) side by side.
pub fn layout_fields(page: &OcrPage) -> Vec<ExtractField> {
    let mut fields = Vec::new();
    let lines = &page.lines;
    let mut i = 0;
    while i < lines.len() {
        // The row: this line and the following ones on the same row.
        let mut j = i + 1;
        while j < lines.len() && same_row(&lines[i], &lines[j]) {
            j += 1;
        }
        let row = &lines[i..j];
        if let Some(f) = row_field(row) {
            fields.push(f);
        }
        i = j;
    }
    fields
}

fn same_row(a: &OcrLine, b: &OcrLine) -> bool {
    let (ca, cb) = ((a.bbox[1] + a.bbox[3]) / 2.0, (b.bbox[1] + b.bbox[3]) / 2.0);
    let h = (a.bbox[3] - a.bbox[1]).min(b.bbox[3] - b.bbox[1]).max(1.0);
    (ca - cb).abs() < 0.5 * h
}

fn row_field(row: &[OcrLine]) -> Option<ExtractField> {
    let text: String = row.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(" ");
    let conf = row.iter().map(|l| l.confidence).sum::<f32>() / row.len() as f32;
    let bbox = [
        row.iter().map(|l| l.bbox[0]).fold(f32::MAX, f32::min),
        row.iter().map(|l| l.bbox[1]).fold(f32::MAX, f32::min),
        row.iter().map(|l| l.bbox[2]).fold(f32::MIN, f32::max),
        row.iter().map(|l| l.bbox[3]).fold(f32::MIN, f32::max),
    ];
    let clean = |s: &str| s.trim().trim_matches(|c: char| c == ':' || c == '-' || c.is_whitespace()).to_string();
    if let Some((k, v)) = text.split_once(':') {
        let (k, v) = (clean(k), clean(v));
        // A time like 12:30 is not a label.
        let is_time = k.chars().last().is_some_and(|c| c.is_ascii_digit()) && v.chars().next().is_some_and(|c| c.is_ascii_digit());
        if !k.is_empty() && !v.is_empty() && k.len() <= 40 && !is_time {
            return Some(ExtractField { key: k, value: v, confidence: conf, bbox: Some(bbox) });
        }
    }
    if row.len() >= 2 {
        let (label, value) = (&row[..row.len() - 1], &row[row.len() - 1]);
        let k = clean(&label.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(" "));
        let v = clean(&value.text);
        if !k.is_empty() && k.chars().any(|c| c.is_alphabetic()) && v.chars().any(|c| c.is_ascii_digit()) {
            return Some(ExtractField { key: k, value: v, confidence: conf, bbox: Some(bbox) });
        }
    }
    None
}

/// Confidence of an answer: the OCR confidence of the line that contains it, else
/// half the page's mean confidence.
pub fn grounded_confidence(page: &OcrPage, answer: &str) -> (f32, Option<[f32; 4]>) {
    let a = answer.trim().to_lowercase();
    if !a.is_empty() {
        if let Some(l) = page.lines.iter().find(|l| l.text.to_lowercase().contains(&a)) {
            return (l.confidence, Some(l.bbox));
        }
        if page.lines.is_empty() && page.text.to_lowercase().contains(&a) {
            return (page.confidence, None);
        }
    }
    (0.5 * page.confidence, None)
}

/// The keys a `schema` asks for: a JSON schema's `properties`, a list of keys, or an
/// object whose keys are the fields.
pub fn schema_keys(schema: &Value) -> Result<Vec<String>> {
    let keys: Vec<String> = match schema {
        Value::Object(o) if o.get("properties").is_some_and(Value::is_object) => {
            o["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
        }
        Value::Object(o) => o.keys().cloned().collect(),
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    if keys.is_empty() {
        return Err(Error::InvalidField { field: "schema".into(), reason: "names no fields (give a JSON schema with properties, or a list of keys)".into() });
    }
    if keys.len() > 50 {
        return Err(Error::InvalidField { field: "schema".into(), reason: format!("names {} fields; at most 50", keys.len()) });
    }
    Ok(keys)
}

/// The prompt that asks the LLM one question about a page.
pub fn question_prompt(page_text: &str, question: &str) -> Vec<crate::llm::ChatMessage> {
    // Small models read little: the page text is cut to about 6000 characters.
    let text: String = page_text.chars().take(6000).collect();
    vec![
        crate::llm::ChatMessage::new("system", "You read documents. Answer the question using only the document text. Reply with the answer only, no explanation."),
        crate::llm::ChatMessage::new("user", format!("Document:\n{text}\n\nQuestion: {question}")),
    ]
}

/// Longest string a field without its own `maxLength` may take, so that a small model's
/// answer ends within its token budget.
pub const FIELD_MAX_CHARS: u64 = 200;

/// The JSON schema an extraction's answer follows: an object with exactly `keys`, all
/// required. A property the caller typed (with `type`, `enum` or `const`) keeps its
/// schema; the others are strings (with the caller's text as their `description` where
/// `schema` maps keys to descriptions). Strings without a `maxLength` get
/// [`FIELD_MAX_CHARS`].
pub fn answer_schema(schema: &Value, keys: &[String]) -> Value {
    let given = schema.get("properties").and_then(Value::as_object);
    let described = schema.as_object().filter(|_| given.is_none());
    let props: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| {
            let typed = given.and_then(|p| p.get(k)).filter(|s| s.as_object().is_some_and(|o| ["type", "enum", "const"].iter().any(|t| o.contains_key(*t))));
            let mut s = typed.cloned().unwrap_or_else(|| serde_json::json!({"type": "string"}));
            if let Some(d) = described.and_then(|o| o.get(k)).and_then(Value::as_str) {
                s["description"] = Value::String(d.to_string());
            }
            if s.get("type") == Some(&Value::String("string".into())) && s.get("maxLength").is_none() && s.get("enum").is_none() {
                s["maxLength"] = serde_json::json!(FIELD_MAX_CHARS);
            }
            (k.clone(), s)
        })
        .collect();
    serde_json::json!({"type": "object", "properties": props, "required": keys, "additionalProperties": false})
}

/// The prompt that asks the LLM for every field of a page as one JSON object.
pub fn fields_prompt(page_text: &str, keys: &[String]) -> Vec<crate::llm::ChatMessage> {
    let text: String = page_text.chars().take(6000).collect();
    vec![
        crate::llm::ChatMessage::new(
            "system",
            "You read documents. Fill in each field of the JSON object with its value from the document text, copied as written. Use an empty string for a field the document does not give.",
        ),
        crate::llm::ChatMessage::new("user", format!("Document:\n{text}\n\nFields: {}", keys.join(", "))),
    ]
}

/// A field's value as text: a string as it is, `null` as empty, anything else as JSON.
pub fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Tidy an LLM answer: the first line, without a leading `Answer:` and quotes.
pub fn clean_answer(s: &str) -> String {
    let first = s.trim().lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let first = first.strip_prefix("Answer:").or_else(|| first.strip_prefix("answer:")).unwrap_or(first).trim();
    first.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim().to_string()
}

/// Softmax of cosine similarities scaled by `1 / temperature`.
pub fn label_scores(sims: &[f32], temperature: f32) -> Vec<f32> {
    let m = sims.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f32> = sims.iter().map(|s| ((s - m) / temperature).exp()).collect();
    let z: f32 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, x: f32, y: f32, conf: f32) -> OcrLine {
        OcrLine { text: text.into(), confidence: conf, bbox: [x, y, x + 60.0, y + 20.0], polygon: [[x, y], [x + 60.0, y], [x + 60.0, y + 20.0], [x, y + 20.0]] }
    }

    fn page(lines: Vec<OcrLine>) -> OcrPage {
        let text = super::super::rows_text(&lines);
        OcrPage { index: 0, text, confidence: 0.9, lines, source: "t".into(), width: 400, height: 400 }
    }

    #[test]
    fn the_answer_schema_asks_for_exactly_the_keys() {
        let keys = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        // A JSON schema: typed properties keep their schema, untyped ones become bounded strings.
        let s = answer_schema(
            &serde_json::json!({"properties": {"total": {"type": "number"}, "shop": {}, "date": {"type": "string", "maxLength": 10}}}),
            &keys(&["total", "shop", "date"]),
        );
        assert_eq!(s["required"], serde_json::json!(["total", "shop", "date"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["total"], serde_json::json!({"type": "number"}));
        assert_eq!(s["properties"]["shop"], serde_json::json!({"type": "string", "maxLength": 200}));
        assert_eq!(s["properties"]["date"]["maxLength"], 10);
        // Keys mapped to descriptions, and a plain list.
        let s = answer_schema(&serde_json::json!({"total": "the amount paid"}), &keys(&["total"]));
        assert_eq!(s["properties"]["total"], serde_json::json!({"type": "string", "description": "the amount paid", "maxLength": 200}));
        let s = answer_schema(&serde_json::json!(["a", "b"]), &keys(&["a", "b"]));
        assert_eq!(s["properties"].as_object().unwrap().len(), 2);
        crate::llm::Grammar::JsonSchema(s).check().unwrap();
        assert_eq!(
            (field_text(&serde_json::json!(" x ")), field_text(&Value::Null), field_text(&serde_json::json!(39.59))),
            ("x".into(), String::new(), "39.59".into())
        );
    }

    #[test]
    fn labelled_rows_become_fields() {
        let p = page(vec![
            line("SHOP NAME", 10.0, 0.0, 0.9),
            line("Date: 2024-01-15", 10.0, 40.0, 0.95),
            line("TOTAL", 10.0, 80.0, 0.8),
            line("15.99", 300.0, 81.0, 1.0),
            line("Time 12:30", 10.0, 120.0, 0.9),
        ]);
        let f = layout_fields(&p);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].key.as_str(), f[0].value.as_str()), ("Date", "2024-01-15"));
        assert_eq!((f[1].key.as_str(), f[1].value.as_str(), f[1].confidence), ("TOTAL", "15.99", 0.9));
        assert_eq!(f[1].bbox, Some([10.0, 80.0, 360.0, 101.0]));
    }

    #[test]
    fn answers_are_grounded_and_cleaned() {
        let p = page(vec![line("TOTAL 15.99", 10.0, 0.0, 0.8)]);
        assert_eq!(grounded_confidence(&p, "15.99").0, 0.8);
        assert_eq!(grounded_confidence(&p, "42.00").0, 0.45);
        assert_eq!(clean_answer("Answer: \"15.99\"\nbecause..."), "15.99");
        assert_eq!(schema_keys(&serde_json::json!({"type": "object", "properties": {"total": {}, "date": {}}})).unwrap(), vec!["total", "date"]);
        assert!(schema_keys(&serde_json::json!(7)).is_err());
        let s = label_scores(&[0.1, 0.5], 0.05);
        assert!(s[1] > 0.99 && (s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(ExtractTask::parse(Some("VQA")).unwrap(), ExtractTask::Vqa);
        assert!(ExtractTask::parse(Some("summarize")).is_err());
    }
}
