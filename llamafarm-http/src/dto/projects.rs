//! Bodies of `/v1/projects/{namespace}[/{project}[/models]]`.

use super::LIST;
use llamafarm_core::config::ModelConfig;
use llamafarm_core::{LlamaFarmConfig, ProjectSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A project: its names and full config.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectDto {
    namespace: String,
    name: String,
    /// The whole `llamafarm.yaml`, as JSON.
    #[schema(value_type = Object)]
    config: Value,
}

/// `{project}`: the answer of create, get, update and delete.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectResponse {
    project: ProjectDto,
}

impl ProjectResponse {
    pub(crate) fn new(namespace: &str, name: &str, config: &LlamaFarmConfig) -> Self {
        Self { project: ProjectDto { namespace: namespace.into(), name: name.into(), config: config.to_value() } }
    }
}

/// A project as listed.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectListItem {
    namespace: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// Why the config could not be loaded, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_error: Option<String>,
    /// RFC 3339 modification time of the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

impl From<ProjectSummary> for ProjectListItem {
    fn from(p: ProjectSummary) -> Self {
        Self {
            namespace: p.namespace,
            name: p.name,
            config: p.config.map(|c| c.to_value()),
            validation_error: p.validation_error,
            last_modified: p.last_modified.map(|t| t.to_rfc3339()),
        }
    }
}

/// `{total, projects}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectList {
    total: usize,
    projects: Vec<ProjectListItem>,
}

impl From<Vec<ProjectSummary>> for ProjectList {
    fn from(list: Vec<ProjectSummary>) -> Self {
        Self { total: list.len(), projects: list.into_iter().map(Into::into).collect() }
    }
}

/// Body of `POST /v1/projects/{namespace}`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateProjectRequest {
    /// Project name: letters, digits, `.`, `_`, `-`.
    pub(crate) name: String,
    /// Built-in template: `default`, `server` or `rag`.
    #[serde(default)]
    pub(crate) config_template: Option<String>,
}

/// Body of `PUT /v1/projects/{namespace}/{project}`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateProjectRequest {
    /// The whole new `llamafarm.yaml`, as JSON.
    #[schema(value_type = Object)]
    pub(crate) config: Value,
}

/// A configured model: its `runtime.models[]` entry with `tool_call_strategy`
/// (default `native_api`), `tools` (default `[]`), `keep_loaded` (default false) and
/// the resolved `default` flag always present.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct ProjectModel(Map<String, Value>);

impl ProjectModel {
    fn new(m: &ModelConfig, is_default: bool) -> Self {
        let mut o = match serde_json::to_value(m) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        o.entry("tool_call_strategy").or_insert_with(|| "native_api".into());
        o.entry("tools").or_insert_with(|| Value::Array(vec![]));
        o.entry("keep_loaded").or_insert(Value::Bool(false));
        o.insert("default".into(), Value::Bool(is_default));
        Self(o)
    }
}

/// A configured model as an OpenAI model object.
#[derive(Serialize, ToSchema)]
pub(crate) struct OpenAiProjectModel {
    /// The model's name in the project.
    id: String,
    /// Always `model`.
    object: &'static str,
    created: i64,
    /// The provider.
    owned_by: String,
    /// The provider's model id.
    model: String,
}

/// `GET /v1/projects/{namespace}/{project}/models`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ModelList {
    total: usize,
    /// Each configured model with a resolved `default` flag.
    models: Vec<ProjectModel>,
    /// OpenAI list shape (`list`), so an OpenAI SDK with the project as `base_url` can list models.
    object: &'static str,
    /// The same models as OpenAI model objects (`id` = the model's name in the project).
    data: Vec<OpenAiProjectModel>,
}

impl From<&LlamaFarmConfig> for ModelList {
    fn from(cfg: &LlamaFarmConfig) -> Self {
        let default = cfg.default_model_name();
        let configured = cfg.models();
        let models: Vec<ProjectModel> = configured.iter().map(|m| ProjectModel::new(m, Some(&m.name) == default.as_ref())).collect();
        let data = configured.into_iter().map(|m| OpenAiProjectModel { id: m.name, object: "model", created: 0, owned_by: m.provider, model: m.model }).collect();
        Self { total: models.len(), models, object: LIST, data }
    }
}
