//! `${VAR}`, `${VAR:-default}` and `${env:VAR}` substitution in string values.
//!
//! The original LlamaFarm documents this syntax but never implemented it; here it
//! works. `$${` writes a literal `${`. Substitution happens when a config is used,
//! never when it is stored, so secrets stay out of `llamafarm.yaml` and API output.
//! The values come from a [`Vars`] set on the library (`lf serve` fills it from its
//! environment); the library itself reads no environment.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The variables that `${VAR}` in a config resolves against. Cheap to clone.
#[derive(Clone, Default)]
pub struct Vars(Arc<BTreeMap<String, String>>);

impl Vars {
    /// No variables: `${VAR:-default}` gives the default, `${VAR}` stays as written.
    pub fn none() -> Self {
        Self::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(Arc::new(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))
    }
}

impl std::fmt::Debug for Vars {
    // Names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Replace variables in every string of `value` from `vars`.
pub fn substitute_vars(value: &mut Value, vars: &Vars) {
    substitute_env_with(value, &|name| vars.get(name).map(str::to_string));
}

/// Replace variables in every string of `value` using `lookup`.
pub fn substitute_env_with(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::String(s) if s.contains('$') => *s = substitute_str(s, lookup),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_env_with(v, lookup)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_env_with(v, lookup)),
        _ => {}
    }
}

/// Substitute one string. Unset variables without a default are left as written.
pub(crate) fn substitute_str(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            continue;
        }
        let Some(end) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let inner = &after[2..end];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        let name = name.strip_prefix("env:").unwrap_or(name).trim();
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (valid, lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (true, Some(v), _) => out.push_str(&v),
            (true, None, Some(d)) => out.push_str(d),
            _ => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_default_and_env_prefix() {
        assert_eq!(substitute_str("http://${HOST}:80", &look), "http://example.org:80");
        assert_eq!(substitute_str("${MISSING:-fallback}", &look), "fallback");
        assert_eq!(substitute_str("${HOST:-fallback}", &look), "example.org");
        assert_eq!(substitute_str("Bearer ${env:HOST}", &look), "Bearer example.org");
        // An empty variable counts as unset when a default is given (shell `:-` semantics).
        assert_eq!(substitute_str("${EMPTY:-d}", &look), "d");
        assert_eq!(substitute_str("${EMPTY}", &look), "");
    }

    #[test]
    fn unset_escaped_and_malformed_are_kept() {
        assert_eq!(substitute_str("${MISSING}", &look), "${MISSING}");
        assert_eq!(substitute_str("$${HOST}", &look), "${HOST}");
        assert_eq!(substitute_str("cost: $5 ${HOST", &look), "cost: $5 ${HOST");
        assert_eq!(substitute_str("${bad name}", &look), "${bad name}");
    }

    #[test]
    fn nested_values() {
        let mut v = serde_json::json!({"a": ["${HOST}", 1, {"b": "${X:-y}"}]});
        substitute_env_with(&mut v, &look);
        assert_eq!(v, serde_json::json!({"a": ["example.org", 1, {"b": "y"}]}));
    }
}
