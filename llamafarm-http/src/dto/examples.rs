//! The Examples API: `/v1/examples*`.

use llamafarm_core::examples::{Example, ExampleDataset, Imported};
use llamafarm_core::model_cache::human_size;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One example.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExampleDto {
    id: String,
    slug: String,
    title: String,
    description: String,
    #[serde(rename = "primaryModel")]
    primary_model: Option<String>,
    tags: Vec<String>,
    dataset_count: usize,
    data_size_bytes: u64,
    data_size_human: String,
    project_size_bytes: u64,
    project_size_human: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    updated_at: String,
}

impl From<Example> for ExampleDto {
    fn from(e: Example) -> Self {
        let t: chrono::DateTime<chrono::Utc> = e.updated_at.into();
        Self {
            slug: e.id.clone(),
            id: e.id,
            title: e.title,
            description: e.description,
            primary_model: e.primary_model,
            tags: e.tags,
            dataset_count: e.datasets.len(),
            data_size_human: human_size(e.data_size_bytes),
            data_size_bytes: e.data_size_bytes,
            project_size_human: human_size(e.project_size_bytes),
            project_size_bytes: e.project_size_bytes,
            updated_at: t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        }
    }
}

/// `GET /v1/examples`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExampleList {
    examples: Vec<ExampleDto>,
}

impl From<Vec<Example>> for ExampleList {
    fn from(v: Vec<Example>) -> Self {
        Self { examples: v.into_iter().map(Into::into).collect() }
    }
}

/// One dataset of an example.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExampleDatasetDto {
    /// The example it belongs to.
    example_id: String,
    name: String,
    database: String,
    data_processing_strategy: Option<String>,
    file_count: usize,
    /// File names.
    files: Vec<String>,
    size_bytes: u64,
    size_human: String,
}

impl ExampleDatasetDto {
    fn new(example: &str, d: ExampleDataset) -> Self {
        Self {
            example_id: example.to_string(),
            file_count: d.files.len(),
            files: d.files.iter().filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_string())).collect(),
            size_human: human_size(d.size_bytes),
            size_bytes: d.size_bytes,
            name: d.name,
            database: d.database,
            data_processing_strategy: d.data_processing_strategy,
        }
    }
}

/// `GET /v1/examples/{example_id}/datasets` and `/v1/examples/datasets`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExampleDatasetList {
    datasets: Vec<ExampleDatasetDto>,
}

impl From<Vec<Example>> for ExampleDatasetList {
    fn from(v: Vec<Example>) -> Self {
        Self { datasets: v.into_iter().flat_map(|e| e.datasets.into_iter().map(move |d| ExampleDatasetDto::new(&e.id, d)).collect::<Vec<_>>()).collect() }
    }
}

/// `POST /v1/examples/{example_id}/import-project`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ImportProjectRequest {
    pub(crate) namespace: String,
    /// The new project's name.
    pub(crate) name: String,
    /// Start a processing task per dataset (default false).
    #[serde(default)]
    pub(crate) process: bool,
}

/// `POST /v1/examples/{example_id}/import-data`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ImportDataRequest {
    pub(crate) namespace: String,
    /// An existing project.
    pub(crate) project: String,
    /// Add the example's databases and strategies the project lacks (default true).
    #[serde(default = "yes")]
    pub(crate) include_strategies: bool,
    #[serde(default)]
    pub(crate) process: bool,
}

/// `POST /v1/examples/{example_id}/import-dataset`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ImportDatasetRequest {
    pub(crate) namespace: String,
    pub(crate) project: String,
    /// The example's dataset.
    pub(crate) dataset: String,
    /// Its name in the project (default: the same).
    #[serde(default)]
    pub(crate) target_dataset: Option<String>,
    #[serde(default = "yes")]
    pub(crate) include_strategies: bool,
    #[serde(default)]
    pub(crate) process: bool,
}

fn yes() -> bool {
    true
}

/// What an import made.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExampleImportResponse {
    project: String,
    namespace: String,
    datasets: Vec<String>,
    task_ids: Vec<String>,
    files_uploaded: usize,
}

impl From<Imported> for ExampleImportResponse {
    fn from(i: Imported) -> Self {
        Self { project: i.project, namespace: i.namespace, datasets: i.datasets, task_ids: i.task_ids, files_uploaded: i.files_uploaded }
    }
}
