//! `/v1/projects/{namespace}[/{project}]` and `/v1/projects/{namespace}/{project}/models`.

use super::call;
use crate::dto::projects::{CreateProjectRequest, ModelList, ProjectList, ProjectResponse, UpdateProjectRequest};
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use llamafarm_core::LlamaFarmConfig;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(list_models))
        .routes(routes!(get_config_yaml, put_config_yaml))
}

/// List the projects of a namespace.
#[utoipa::path(get, path = "/v1/projects/{namespace}", tag = "projects", operation_id = "projects_list",
    params(("namespace" = String, Path, description = "Namespace")),
    responses((status = 200, body = ProjectList), (status = 400, body = ErrorBody)))]
async fn list_projects(State(st): State<AppState>, Path(namespace): Path<String>) -> ApiResult<Json<ProjectList>> {
    let list = call(&st, move |lf| lf.projects().list(&namespace)).await?;
    Ok(Json(list.into()))
}

/// Create a project from a template. 409 if it exists.
#[utoipa::path(post, path = "/v1/projects/{namespace}", tag = "projects", operation_id = "project_create",
    params(("namespace" = String, Path, description = "Namespace")),
    request_body = CreateProjectRequest,
    responses((status = 200, body = ProjectResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_project(State(st): State<AppState>, Path(namespace): Path<String>, Json(req): Json<CreateProjectRequest>) -> ApiResult<Json<ProjectResponse>> {
    let ns = namespace.clone();
    let (name, cfg) = call(&st, move |lf| {
        let cfg = lf.projects().create(&ns, &req.name, req.config_template.as_deref())?.config()?;
        Ok((req.name, cfg))
    })
    .await?;
    Ok(Json(ProjectResponse::new(&namespace, &name, &cfg)))
}

/// Get a project and its config.
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}", tag = "projects", operation_id = "project_get",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, body = ProjectResponse), (status = 404, body = ErrorBody)))]
async fn get_project(State(st): State<AppState>, Path((namespace, project)): Path<(String, String)>) -> ApiResult<Json<ProjectResponse>> {
    let (ns, p) = (namespace.clone(), project.clone());
    let cfg = call(&st, move |lf| lf.project(&ns, &p)?.config()).await?;
    Ok(Json(ProjectResponse::new(&namespace, &project, &cfg)))
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
    let (ns, p) = (namespace.clone(), project.clone());
    let saved = call(&st, move |lf| {
        let p = lf.project(&ns, &p)?;
        p.replace_config(LlamaFarmConfig::from_value_unvalidated(req.config)?)
    })
    .await?;
    Ok(Json(ProjectResponse::new(&namespace, &project, &saved)))
}

/// The project's `llamafarm.yaml` as YAML text (what the web app's editor shows).
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/llamafarm.yaml", tag = "projects", operation_id = "project_config_yaml",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, description = "The config as YAML (a mapping)", body = Object, content_type = "application/yaml"), (status = 404, body = ErrorBody)))]
async fn get_config_yaml(State(st): State<AppState>, Path((namespace, project)): Path<(String, String)>) -> ApiResult<Response> {
    let text = call(&st, move |lf| lf.project(&namespace, &project)?.config()?.to_yaml_string()).await?;
    Ok(([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], text).into_response())
}

/// Replace a project's config with a `llamafarm.yaml` sent as the body (YAML or JSON
/// text), validated as `PUT /v1/projects/{namespace}/{project}` validates it; a 422
/// names the path of the first bad value.
#[utoipa::path(put, path = "/v1/projects/{namespace}/{project}/llamafarm.yaml", tag = "projects", operation_id = "project_config_yaml_put",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    request_body(content = String, content_type = "application/yaml", description = "The llamafarm.yaml text"),
    responses((status = 200, body = ProjectResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_config_yaml(State(st): State<AppState>, Path((namespace, project)): Path<(String, String)>, text: String) -> ApiResult<Json<ProjectResponse>> {
    let (ns, p) = (namespace.clone(), project.clone());
    let saved =
        call(&st, move |lf| lf.project(&ns, &p)?.replace_config(LlamaFarmConfig::from_value_unvalidated(llamafarm_core::config::parse_yaml_value(&text)?)?)).await?;
    Ok(Json(ProjectResponse::new(&namespace, &project, &saved)))
}

/// Delete a project and all its data (the original only pretended to).
#[utoipa::path(delete, path = "/v1/projects/{namespace}/{project}", tag = "projects", operation_id = "project_delete",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, description = "The deleted project", body = ProjectResponse), (status = 404, body = ErrorBody)))]
async fn delete_project(State(st): State<AppState>, Path((namespace, project)): Path<(String, String)>) -> ApiResult<Json<ProjectResponse>> {
    let (ns, p) = (namespace.clone(), project.clone());
    let cfg = call(&st, move |lf| lf.projects().delete(&ns, &p)).await?;
    Ok(Json(ProjectResponse::new(&namespace, &project, &cfg)))
}

/// The project's configured models; `default` is resolved from `runtime.default_model`
/// or a model's `default: true` (else the first model).
#[utoipa::path(get, path = "/v1/projects/{namespace}/{project}/models", tag = "models", operation_id = "models_list",
    params(("namespace" = String, Path, description = "Namespace"), ("project" = String, Path, description = "Project")),
    responses((status = 200, body = ModelList), (status = 404, body = ErrorBody)))]
async fn list_models(State(st): State<AppState>, Path((namespace, project)): Path<(String, String)>) -> ApiResult<Json<ModelList>> {
    let cfg = call(&st, move |lf| lf.project(&namespace, &project)?.config()).await?;
    Ok(Json(ModelList::from(&cfg)))
}
