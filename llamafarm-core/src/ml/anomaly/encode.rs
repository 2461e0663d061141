//! Rows as sent by callers (arrays of numbers or JSON objects) and the schema encoder
//! that turns objects into numeric features.
//!
//! Encodings per field (`schema`):
//!
//! | type | output | unseen value at score time |
//! |---|---|---|
//! | `numeric` | the number (numbers, numeric strings, booleans as 0/1) | - |
//! | `label` | index in the sorted training categories | -1 |
//! | `hash` | first 8 bytes of SHA-256 of the value, modulo 1000 | (stable) |
//! | `onehot` | one 0/1 column per training category, `field=value` | all 0 |
//! | `binary` | 1 for true/yes/y/on/t/1 (and non-zero numbers), 0 for false/no/n/off/f/0 | - |
//! | `frequency` | share of training rows with that value | 0 |
//!
//! Without a schema the encoding is inferred from the training rows: booleans ->
//! `binary`, numbers -> `numeric`, anything else -> `label`. Fields are taken in
//! name order; fields of a row not in the schema are ignored; a schema field missing
//! from a row is an error.

use super::util::Mat;
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// How one field of an object row becomes features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldEncoding {
    /// Numbers as they are.
    Numeric,
    /// Category -> integer (sorted training categories).
    Label,
    /// Hash of the value into 1000 buckets (high cardinality).
    Hash,
    /// One column per training category.
    Onehot,
    /// Boolean-like -> 0/1.
    Binary,
    /// Category -> its share of the training rows.
    Frequency,
}

/// One input row: an array of numbers or an object encoded by a schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnomalyRow {
    /// Numeric features.
    Values(Vec<f64>),
    /// Named fields (encoded with the model's schema).
    Record(Map<String, Value>),
}

impl From<Vec<f64>> for AnomalyRow {
    fn from(v: Vec<f64>) -> Self {
        AnomalyRow::Values(v)
    }
}

impl From<Map<String, Value>> for AnomalyRow {
    fn from(m: Map<String, Value>) -> Self {
        AnomalyRow::Record(m)
    }
}

impl<'de> Deserialize<'de> for AnomalyRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match Value::deserialize(d)? {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or_else(|| D::Error::custom(format!("row value {i} is not a number: {v}"))))
                .collect::<std::result::Result<Vec<f64>, _>>()
                .map(AnomalyRow::Values),
            Value::Object(m) => Ok(AnomalyRow::Record(m)),
            other => Err(D::Error::custom(format!("a row must be an array of numbers or an object, got {other}"))),
        }
    }
}

/// Per-field state learnt at fit time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FieldState {
    Numeric,
    Label { classes: Vec<String> },
    Hash { buckets: u64 },
    Onehot { categories: Vec<String> },
    Binary,
    Frequency { freq: BTreeMap<String, f64> },
}

/// A fitted schema encoder, stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEncoder {
    /// Field -> encoding.
    pub schema: BTreeMap<String, FieldEncoding>,
    /// Names of the produced feature columns, in order.
    pub features: Vec<String>,
    fields: Vec<FieldState>,
}

/// The public view of an encoder (`encoder` in fit responses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// Field -> encoding.
    pub schema: BTreeMap<String, FieldEncoding>,
    /// The feature columns the rows are encoded into.
    pub features: Vec<String>,
}

fn category(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn binary(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64().map(|x| if x != 0.0 { 1.0 } else { 0.0 }),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "t" | "1" => Some(1.0),
            "false" | "no" | "n" | "off" | "f" | "0" => Some(0.0),
            _ => None,
        },
        _ => None,
    }
}

fn hash_bucket(s: &str, buckets: u64) -> f64 {
    let h = Sha256::digest(s.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) % buckets.max(1)) as f64
}

/// Infer a schema from object rows.
pub fn infer_schema(rows: &[&Map<String, Value>]) -> BTreeMap<String, FieldEncoding> {
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let vals: Vec<&Value> = rows.iter().filter_map(|r| r.get(k)).filter(|v| !v.is_null()).collect();
            let enc = if !vals.is_empty() && vals.iter().all(|v| v.is_boolean()) {
                FieldEncoding::Binary
            } else if !vals.is_empty() && vals.iter().all(|v| v.is_number()) {
                FieldEncoding::Numeric
            } else {
                FieldEncoding::Label
            };
            (k.clone(), enc)
        })
        .collect()
}

fn field<'a>(row: &'a Map<String, Value>, i: usize, name: &str) -> Result<&'a Value> {
    row.get(name).ok_or_else(|| Error::invalid("data", format!("row {i} has no field '{name}' of the schema")))
}

impl FeatureEncoder {
    /// Learn category tables from the training rows.
    pub fn fit(schema: BTreeMap<String, FieldEncoding>, rows: &[&Map<String, Value>]) -> Result<Self> {
        if schema.is_empty() {
            return Err(Error::invalid("schema", "has no fields"));
        }
        let mut fields = Vec::with_capacity(schema.len());
        let mut features = Vec::new();
        for (name, enc) in &schema {
            let cats = || -> Result<Vec<String>> {
                let mut out = Vec::with_capacity(rows.len());
                for (i, r) in rows.iter().enumerate() {
                    out.push(category(field(r, i, name)?));
                }
                Ok(out)
            };
            let st = match enc {
                FieldEncoding::Numeric => FieldState::Numeric,
                FieldEncoding::Binary => FieldState::Binary,
                FieldEncoding::Hash => FieldState::Hash { buckets: 1000 },
                FieldEncoding::Label => {
                    let set: BTreeSet<String> = cats()?.into_iter().collect();
                    FieldState::Label { classes: set.into_iter().collect() }
                }
                FieldEncoding::Onehot => {
                    let set: BTreeSet<String> = cats()?.into_iter().collect();
                    FieldState::Onehot { categories: set.into_iter().collect() }
                }
                FieldEncoding::Frequency => {
                    let c = cats()?;
                    let n = c.len().max(1) as f64;
                    let mut freq = BTreeMap::new();
                    for v in c {
                        *freq.entry(v).or_insert(0.0) += 1.0 / n;
                    }
                    FieldState::Frequency { freq }
                }
            };
            match &st {
                FieldState::Onehot { categories } => features.extend(categories.iter().map(|c| format!("{name}={c}"))),
                _ => features.push(name.clone()),
            }
            fields.push(st);
        }
        Ok(Self { schema, features, fields })
    }

    /// Encode object rows into a matrix.
    pub fn transform(&self, rows: &[&Map<String, Value>]) -> Result<Mat> {
        let d = self.features.len();
        let mut data = Vec::with_capacity(rows.len() * d);
        for (i, r) in rows.iter().enumerate() {
            for ((name, _), st) in self.schema.iter().zip(&self.fields) {
                let v = field(r, i, name)?;
                match st {
                    FieldState::Numeric => data.push(
                        numeric(v)
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| Error::invalid("data", format!("row {i}: field '{name}' is numeric in the schema but is {v}")))?,
                    ),
                    FieldState::Binary => {
                        data.push(binary(v).ok_or_else(|| Error::invalid("data", format!("row {i}: field '{name}' is binary in the schema but is {v}")))?)
                    }
                    FieldState::Hash { buckets } => data.push(hash_bucket(&category(v), *buckets)),
                    FieldState::Label { classes } => {
                        let c = category(v);
                        data.push(classes.binary_search(&c).map_or(-1.0, |k| k as f64));
                    }
                    FieldState::Onehot { categories } => {
                        let c = category(v);
                        let hit = categories.binary_search(&c).ok();
                        data.extend((0..categories.len()).map(|k| if Some(k) == hit { 1.0 } else { 0.0 }));
                    }
                    FieldState::Frequency { freq } => data.push(freq.get(&category(v)).copied().unwrap_or(0.0)),
                }
            }
        }
        Ok(Mat { n: rows.len(), d, data })
    }

    /// Schema and feature names.
    pub fn info(&self) -> EncoderInfo {
        EncoderInfo { schema: self.schema.clone(), features: self.features.clone() }
    }
}

/// Rows split by kind: all arrays or all objects.
pub enum Rows<'a> {
    /// Numeric rows, checked rectangular and finite.
    Numeric(Mat),
    /// Object rows.
    Records(Vec<&'a Map<String, Value>>),
}

/// Check the rows: not empty, one kind, equal length, finite.
pub fn split_rows(rows: &[AnomalyRow]) -> Result<Rows<'_>> {
    let first = rows.first().ok_or_else(|| Error::invalid("data", "is empty"))?;
    match first {
        AnomalyRow::Values(v0) => {
            let d = v0.len();
            if d == 0 {
                return Err(Error::invalid("data", "row 0 is empty"));
            }
            let mut data = Vec::with_capacity(rows.len() * d);
            for (i, r) in rows.iter().enumerate() {
                let AnomalyRow::Values(v) = r else {
                    return Err(Error::invalid("data", format!("row {i} is an object but row 0 is an array: use one kind of row")));
                };
                if v.len() != d {
                    return Err(Error::invalid("data", format!("has ragged rows: row {i} has {} values, row 0 has {d}", v.len())));
                }
                if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                    return Err(Error::invalid("data", format!("row {i}, value {j} is {}: NaN and infinite values are not allowed", v[j])));
                }
                data.extend_from_slice(v);
            }
            Ok(Rows::Numeric(Mat { n: rows.len(), d, data }))
        }
        AnomalyRow::Record(_) => rows
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                AnomalyRow::Record(m) => Ok(m),
                AnomalyRow::Values(_) => Err(Error::invalid("data", format!("row {i} is an array but row 0 is an object: use one kind of row"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Rows::Records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recs(v: Value) -> Vec<Map<String, Value>> {
        v.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
    }

    #[test]
    fn every_encoding() {
        let rows = recs(json!([
            {"t": 1.5, "m": "GET", "ua": "Mozilla", "p": "tcp", "ok": true, "c": "a", "extra": 1},
            {"t": "2", "m": "POST", "ua": "curl", "p": "udp", "ok": "no", "c": "a"},
            {"t": 3, "m": "GET", "ua": "Mozilla", "p": "tcp", "ok": 0, "c": "b"},
            {"t": 4, "m": "GET", "ua": "Mozilla", "p": "tcp", "ok": "yes", "c": "a"}
        ]));
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let schema: BTreeMap<String, FieldEncoding> = serde_json::from_value(json!({
            "t": "numeric", "m": "label", "ua": "hash", "p": "onehot", "ok": "binary", "c": "frequency"
        }))
        .unwrap();
        let enc = FeatureEncoder::fit(schema, &refs).unwrap();
        assert_eq!(enc.features, vec!["c", "m", "ok", "p=tcp", "p=udp", "t", "ua"]);
        let x = enc.transform(&refs).unwrap();
        assert_eq!(x.d, 7);
        assert_eq!(&x.row(0)[..6], &[0.75, 0.0, 1.0, 1.0, 0.0, 1.5]);
        assert_eq!(&x.row(1)[..6], &[0.75, 1.0, 0.0, 0.0, 1.0, 2.0]);
        assert_eq!(x.row(2)[0], 0.25);
        assert_eq!(x.row(0)[6], x.row(2)[6], "same value, same hash");
        assert!((0.0..1000.0).contains(&x.row(0)[6]));
        // Unseen categories at score time.
        let new = recs(json!([{"t": 1, "m": "DELETE", "ua": "sqlmap", "p": "icmp", "ok": "y", "c": "zzz"}]));
        let nr: Vec<&Map<String, Value>> = new.iter().collect();
        let y = enc.transform(&nr).unwrap();
        assert_eq!(&y.row(0)[..6], &[0.0, -1.0, 1.0, 0.0, 0.0, 1.0]);
        // Bad values and missing fields are errors.
        for bad in [
            json!([{"t": "x", "m": "GET", "ua": "", "p": "tcp", "ok": true, "c": "a"}]),
            json!([{"t": 1, "m": "GET", "ua": "", "p": "tcp", "ok": "maybe", "c": "a"}]),
            json!([{"m": "GET", "ua": "", "p": "tcp", "ok": true, "c": "a"}]),
        ] {
            let b = recs(bad);
            let br: Vec<&Map<String, Value>> = b.iter().collect();
            assert!(matches!(enc.transform(&br), Err(Error::InvalidField { .. })));
        }
    }

    #[test]
    fn inference_and_row_checks() {
        let rows = recs(json!([{"a": 1, "b": "x", "c": true}, {"a": 2.5, "b": "y", "c": false}]));
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let s = infer_schema(&refs);
        assert_eq!(s["a"], FieldEncoding::Numeric);
        assert_eq!(s["b"], FieldEncoding::Label);
        assert_eq!(s["c"], FieldEncoding::Binary);

        let ragged = vec![AnomalyRow::Values(vec![1.0, 2.0]), AnomalyRow::Values(vec![1.0])];
        assert!(matches!(split_rows(&ragged), Err(e @ Error::InvalidField { .. }) if e.to_string().contains("ragged")));
        let nan = vec![AnomalyRow::Values(vec![1.0, f64::NAN])];
        assert!(matches!(split_rows(&nan), Err(e @ Error::InvalidField { .. }) if e.to_string().contains("NaN")));
        let inf = vec![AnomalyRow::Values(vec![f64::INFINITY])];
        assert!(split_rows(&inf).is_err());
        assert!(split_rows(&[]).is_err());
        let mixed = vec![AnomalyRow::Values(vec![1.0]), AnomalyRow::Record(Map::new())];
        assert!(split_rows(&mixed).is_err());
        let r: AnomalyRow = serde_json::from_value(json!([1, 2.5])).unwrap();
        assert_eq!(r, AnomalyRow::Values(vec![1.0, 2.5]));
        assert!(serde_json::from_value::<AnomalyRow>(json!([1, "x"])).is_err());
        assert!(serde_json::from_value::<AnomalyRow>(json!(3)).is_err());
    }
}
