//! `/v1/projects/{namespace}[/{project}]` and `/v1/projects/{namespace}/{project}/models`.

use super::blocking;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use llamafarm_core::{LlamaFarmConfig, ProjectSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(list_models))
}

/// A project: its names and full config.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectDto {
    namespace: String,
    name: String,
    #[schema(value_type = Object)]
    config: Value,
}

impl ProjectDto {
    fn new(namespace: &str, name: &str, config: &LlamaFarmConfig) -> Self {
        Self { namespace: namespace.into(), name: name.into(), config: config.to_value() }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectResponse {
    project: ProjectDto,
}

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

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectList {
    total: usize,
    projects: Vec<ProjectListItem>,
}

/// List the projects of a namespace.
#[utoipa::path(get, path = "/v1/projects/{namespace}", tag = "projects", operation_id = "projects_list",
    params(("namespace" = String, Path, description = "Namespace")),
    responses((status = 200, body = ProjectList), (status = 400, body = ErrorBody)))]
async fn list_projects(State(st): State<AppState>, Path(namespace): Path<String>) -> ApiResult<Json<ProjectList>> {
    let lf = st.lf.clone();
    let list = blocking(move || lf.projects().list(&namespace)).await?;
    Ok(Json(ProjectList { total: list.len(), projects: list.into_iter().map(Into::into).collect() }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateProjectRequest {
    /// Project name: letters, digits, `.`, `_`, `-`.
    name: String,
    /// Built-in template: `default`, `server` or `rag`.
    #[serde(default)]
    config_template: Option<String>,
}

/// Create a project from a template. 409 if it exists.
#[utoipa::path(post, path = "/v1/projects/{namespace}", tag = "projects", operation_id = "project_create",
    params(("namespace" = String, Path, description = "Namespace")),
    request_body = CreateProjectRequest,
    responses((status = 200, body = ProjectResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_project(
    State(st): State<AppState>,
    Path(namespace): Path<String>,
    Json(req): Json<CreateProjectRequest>,
) -> ApiResult<Json<ProjectResponse>> {
    let lf = st.lf.clone();
    blocking(move || {
        let p = lf.projects().create(&namespace, &req.name, req.config_template.as_deref())?;
        let cfg = p.config()?;
        Ok(Json(ProjectResponse { project: ProjectDto::new(&namespace, &req.name, &cfg) }))
    })
    .await
}

/// Get a project and its config.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}", tag = "projects", operation_id = "project_get",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, body = ProjectResponse), (status = 404, body = ErrorBody)))]
async fn get_project(
    State(st): State<AppState>,
    Path((namespace, project)): Path<(String, String)>,
) -> ApiResult<Json<ProjectResponse>> {
    let lf = st.lf.clone();
    blocking(move || {
        let cfg = lf.project(&namespace, &project)?.config()?;
        Ok(Json(ProjectResponse { project: ProjectDto::new(&namespace, &project, &cfg) }))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateProjectRequest {
    /// The whole new `llamafarm.yaml`, as JSON.
    #[schema(value_type = Object)]
    config: Value,
}

/// Replace a project's config (validated; the previous one is backed up).
#[utoipa::path(put, path = "/v1/projects/{namespace}/{project}", tag = "projects", operation_id = "project_update",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    request_body = UpdateProjectRequest,
    responses((status = 200, body = ProjectResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_project(
    State(st): State<AppState>,
    Path((namespace, project)): Path<(String, String)>,
    Json(req): Json<UpdateProjectRequest>,
) -> ApiResult<Json<ProjectResponse>> {
    let lf = st.lf.clone();
    blocking(move || {
        let p = lf.project(&namespace, &project)?;
        let cfg = LlamaFarmConfig::from_value_unvalidated(req.config)?;
        let saved = p.replace_config(cfg)?;
        Ok(Json(ProjectResponse { project: ProjectDto::new(&namespace, &project, &saved) }))
    })
    .await
}

/// Delete a project and all its data (the original only pretended to).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}", tag = "projects", operation_id = "project_delete",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, description = "The deleted project", body = ProjectResponse), (status = 404, body = ErrorBody)))]
async fn delete_project(
    State(st): State<AppState>,
    Path((namespace, project)): Path<(String, String)>,
) -> ApiResult<Json<ProjectResponse>> {
    let lf = st.lf.clone();
    blocking(move || {
        let cfg = lf.projects().delete(&namespace, &project)?;
        Ok(Json(ProjectResponse { project: ProjectDto::new(&namespace, &project, &cfg) }))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ModelList {
    total: usize,
    /// Each configured model with a resolved `default` flag.
    #[schema(value_type = Vec<Object>)]
    models: Vec<Value>,
    /// OpenAI list shape, so an OpenAI SDK with the project as `base_url` can list models.
    object: &'static str,
    /// The same models as OpenAI model objects (`id` = the model's name in the project).
    #[schema(value_type = Vec<Object>)]
    data: Vec<Value>,
}

/// The project's configured models; `default` is resolved from `runtime.default_model`
/// or a model's `default: true` (else the first model).
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/models", tag = "models", operation_id = "models_list",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, body = ModelList), (status = 404, body = ErrorBody)))]
async fn list_models(
    State(st): State<AppState>,
    Path((namespace, project)): Path<(String, String)>,
) -> ApiResult<Json<ModelList>> {
    let lf = st.lf.clone();
    blocking(move || {
        let cfg = lf.project(&namespace, &project)?.config()?;
        let default = cfg.default_model_name();
        let models: Vec<Value> = cfg
            .models()
            .into_iter()
            .map(|m| {
                let is_default = Some(&m.name) == default.as_ref();
                let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut v {
                    o.entry("tool_call_strategy").or_insert_with(|| "native_api".into());
                    o.entry("tools").or_insert_with(|| Value::Array(vec![]));
                    o.entry("keep_loaded").or_insert(Value::Bool(false));
                    o.insert("default".into(), Value::Bool(is_default));
                }
                v
            })
            .collect();
        let data = cfg
            .models()
            .iter()
            .map(|m| serde_json::json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.provider, "model": m.model}))
            .collect();
        Ok(Json(ModelList { total: models.len(), models, object: "list", data }))
    })
    .await
}
