//! Metadata filters: `{"key": value}` equality, a list means any of, and operator
//! objects `{"$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$in" | "$nin": ...}`
//! (Chroma's `where` dialect, which the original passed through).

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// A parsed filter. All conditions must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataFilter {
    conds: Vec<(String, Cond)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Cmp(&'static str, f64),
}

impl MetadataFilter {
    /// Parse a filter object; malformed filters are an [`Error::InvalidField`].
    pub fn parse(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::invalid("metadata_filters", "must be an object"))?;
        Self::from_map(obj)
    }

    /// Parse from a map.
    pub fn from_map(obj: &Map<String, Value>) -> Result<Self> {
        let mut conds = Vec::new();
        for (k, v) in obj {
            if k.is_empty() {
                return Err(Error::invalid("metadata_filters", "has an empty key"));
            }
            match v {
                Value::Object(ops) => {
                    if ops.is_empty() {
                        return Err(Error::invalid(format!("metadata_filters.{k}"), "is an empty operator object"));
                    }
                    for (op, arg) in ops {
                        let c = match op.as_str() {
                            "$eq" => Cond::Eq(scalar(k, arg)?),
                            "$ne" => Cond::Ne(scalar(k, arg)?),
                            "$in" => Cond::In(list(k, arg)?),
                            "$nin" => Cond::Nin(list(k, arg)?),
                            "$gt" | "$gte" | "$lt" | "$lte" => {
                                let n = arg.as_f64().ok_or_else(|| Error::invalid(format!("metadata_filters.{k}.{op}"), "must be a number"))?;
                                Cond::Cmp(
                                    match op.as_str() {
                                        "$gt" => "gt",
                                        "$gte" => "gte",
                                        "$lt" => "lt",
                                        _ => "lte",
                                    },
                                    n,
                                )
                            }
                            other => return Err(Error::invalid(format!("metadata_filters.{k}"), format!("has an unknown operator '{other}'"))),
                        };
                        conds.push((k.clone(), c));
                    }
                }
                Value::Array(_) => conds.push((k.clone(), Cond::In(list(k, v)?))),
                Value::Null => return Err(Error::invalid(format!("metadata_filters.{k}"), "is null, which is not a filter value")),
                other => conds.push((k.clone(), Cond::Eq(other.clone()))),
            }
        }
        Ok(Self { conds })
    }

    /// Both filters' conditions.
    pub fn and(mut self, other: MetadataFilter) -> Self {
        self.conds.extend(other.conds);
        self
    }

    /// Whether the filter has no conditions.
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// The conditions a Chroma server evaluates exactly as [`MetadataFilter::matches`]
    /// does on scalar metadata, as `(key, operator object)`: equality and `$in` on
    /// strings and booleans, and numeric comparisons. `$ne`/`$nin` (which a missing key
    /// passes here) and numeric equality (3 equals 3.0 here) are left to `matches`.
    pub fn server_side_conditions(&self) -> Vec<(String, Value)> {
        let textual = |v: &Value| v.is_string() || v.is_boolean();
        self.conds
            .iter()
            .filter_map(|(k, c)| {
                let op = match c {
                    Cond::Eq(v) if textual(v) => serde_json::json!({"$eq": v}),
                    Cond::In(vs) if !vs.is_empty() && vs.iter().all(|v| v.is_string()) => serde_json::json!({"$in": vs}),
                    Cond::Cmp(op, n) => serde_json::json!({ format!("${op}"): n }),
                    _ => return None,
                };
                Some((k.clone(), op))
            })
            .collect()
    }

    /// Does `meta` satisfy every condition?
    pub fn matches(&self, meta: &Map<String, Value>) -> bool {
        self.conds.iter().all(|(k, c)| {
            let v = meta.get(k);
            match c {
                Cond::Eq(want) => v.is_some_and(|v| loose_eq(v, want)),
                Cond::Ne(want) => !v.is_some_and(|v| loose_eq(v, want)),
                Cond::In(opts) => v.is_some_and(|v| opts.iter().any(|o| loose_eq(v, o))),
                Cond::Nin(opts) => !v.is_some_and(|v| opts.iter().any(|o| loose_eq(v, o))),
                Cond::Cmp(op, n) => v.and_then(|v| v.as_f64()).is_some_and(|x| match *op {
                    "gt" => x > *n,
                    "gte" => x >= *n,
                    "lt" => x < *n,
                    _ => x <= *n,
                }),
            }
        })
    }
}

fn scalar(k: &str, v: &Value) -> Result<Value> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err(Error::invalid(format!("metadata_filters.{k}"), "must be a string, number or boolean")),
    }
}

fn list(k: &str, v: &Value) -> Result<Vec<Value>> {
    let a = v.as_array().ok_or_else(|| Error::invalid(format!("metadata_filters.{k}"), "must be a list"))?;
    a.iter().map(|x| scalar(k, x)).collect()
}

/// Equality that treats 3 and 3.0 alike, and a metadata list as "contains".
fn loose_eq(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(items), w) => items.iter().any(|i| loose_eq(i, w)),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        let meta = json!({"page": 3, "type": "pdf", "tags": ["a", "b"]}).as_object().unwrap().clone();
        let f = |v: Value| MetadataFilter::parse(&v).unwrap().matches(&meta);
        assert!(f(json!({"type": "pdf"})));
        assert!(!f(json!({"type": "txt"})));
        assert!(f(json!({"page": 3.0})));
        assert!(f(json!({"type": ["txt", "pdf"]})));
        assert!(f(json!({"page": {"$gte": 3, "$lt": 4}})));
        assert!(!f(json!({"page": {"$gt": 3}})));
        assert!(f(json!({"tags": "b"})));
        assert!(f(json!({"missing": {"$ne": 1}})));
        assert!(!f(json!({"missing": 1})));
        for bad in [json!([1]), json!({"a": null}), json!({"a": {"$regex": "x"}}), json!({"a": {"$gt": "x"}}), json!({"a": {}})] {
            assert!(MetadataFilter::parse(&bad).is_err(), "{bad}");
        }
    }
}
