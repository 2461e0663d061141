//! OCR and document extraction: `/v1/vision/*` on the API (multipart uploads), and
//! `/v1/ocr`, `/v1/documents/extract` and `/v1/files*` on the runtime (JSON with
//! base64 images or file ids).

use super::call;
use super::datasets::multipart_err;
use crate::dto::vision::*;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::AppState;
use axum::extract::{Multipart, State};
use llamafarm_core::vision::extract::ExtractTask;
use llamafarm_core::vision::{DocumentInput, ExtractRequest, OcrOptions};
use llamafarm_core::Error;
use std::collections::HashMap;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vision_ocr)).routes(routes!(vision_extract))
}

pub(crate) fn runtime_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(runtime_ocr))
        .routes(routes!(runtime_extract))
        .routes(routes!(upload_file, list_files))
        .routes(routes!(get_file, delete_file))
        .routes(routes!(file_images))
}

/// A multipart form: its files and its text fields.
struct Form {
    files: Vec<DocumentInput>,
    fields: HashMap<String, String>,
}

impl Form {
    fn flag(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.fields.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(Some(true)),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off" | "") => Ok(Some(false)),
            Some(v) => Err(Error::InvalidField { field: name.into(), reason: format!("must be true or false, got '{v}'") }),
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// The documents: uploaded files, then the `images` field (a JSON array of base64
    /// strings, or one base64 string).
    fn documents(&mut self) -> Result<Vec<DocumentInput>, Error> {
        let mut docs = std::mem::take(&mut self.files);
        if let Some(images) = self.text("images") {
            let list: Vec<String> = if images.starts_with('[') {
                serde_json::from_str(&images).map_err(|_| Error::InvalidField { field: "images".into(), reason: "must be a JSON array of base64 strings".into() })?
            } else {
                vec![images]
            };
            docs.extend(decode_images(&list)?);
        }
        if docs.is_empty() {
            return Err(Error::InvalidField { field: "file".into(), reason: "or images is required".into() });
        }
        Ok(docs)
    }
}

async fn read_form(st: &AppState, mut mp: Multipart) -> ApiResult<Form> {
    let mut form = Form { files: Vec::new(), fields: HashMap::new() };
    let max = st.opts.body_limit;
    while let Some(field) = mp.next_field().await.map_err(multipart_err)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" || name == "files" || (field.file_name().is_some() && name != "images") {
            let file_name = field.file_name().map(str::to_string).unwrap_or_else(|| "upload".into());
            let bytes = field.bytes().await.map_err(multipart_err)?;
            if bytes.len() > max {
                return Err(Error::TooLarge { what: format!("file '{file_name}'"), limit: max as u64 }.into());
            }
            if form.files.len() >= MAX_IMAGES {
                return Err(Error::InvalidField { field: "file".into(), reason: format!("at most {MAX_IMAGES} files per request") }.into());
            }
            form.files.push(DocumentInput::Bytes { name: file_name, bytes: bytes.to_vec() });
        } else {
            let text = field.text().await.map_err(multipart_err)?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

fn ocr_options(model: Option<String>, languages: Vec<String>, force_ocr: bool) -> OcrOptions {
    OcrOptions { model, languages, force_ocr }
}

/// OCR uploaded files or base64 images (multipart: `file`, `images`, `model`, `languages`, `return_boxes`).
#[utoipa::path(post, path = "/v1/vision/ocr", tag = "vision",
    request_body(content_type = "multipart/form-data", description = "`file` (PDF or image) or `images` (JSON array of base64), `model`, `languages` (comma-separated), `return_boxes`"),
    responses((status = 200, body = OcrResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn vision_ocr(State(st): State<AppState>, mp: Multipart) -> ApiResult<Json<OcrResponse>> {
    let mut form = read_form(&st, mp).await?;
    let docs = form.documents()?;
    let model = form.text("model");
    let languages = form.text("languages").map(|l| Languages::Joined(l).codes()).unwrap_or_default();
    let boxes = form.flag("return_boxes")?.unwrap_or(false);
    let opts = ocr_options(model.clone(), languages, form.flag("force_ocr")?.unwrap_or(false));
    let (out, errors) = call(&st, move |lf| lf.ocr(&docs, &opts)).await?;
    all_failed(&out.pages, &errors)?;
    Ok(Json(OcrResponse::new(out, errors, model, boxes)))
}

/// A request whose every page failed is a 422 with the first page's reason.
fn all_failed<T>(pages: &[T], errors: &[llamafarm_core::vision::PageError]) -> Result<(), Error> {
    match errors.first() {
        Some(e) if pages.is_empty() => Err(Error::Parse { what: format!("page {}", e.index + 1), message: e.reason.clone() }),
        _ => Ok(()),
    }
}

/// Extract fields, answers or a label from uploaded documents (multipart: `file`, `images`, `model`, `prompts`, `task`).
#[utoipa::path(post, path = "/v1/vision/documents/extract", tag = "vision",
    request_body(content_type = "multipart/form-data", description = "`file` or `images`, `model`, `prompts` (comma-separated), `task` (extraction, vqa, classification), `schema` (JSON)"),
    responses((status = 200, body = ExtractResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn vision_extract(State(st): State<AppState>, mp: Multipart) -> ApiResult<Json<ExtractResponse>> {
    let mut form = read_form(&st, mp).await?;
    let docs = form.documents()?;
    let schema = match form.text("schema") {
        Some(s) => Some(
            serde_json::from_str(&s).map_err(|_| Error::InvalidField { field: "schema".into(), reason: "must be JSON (a JSON schema or a list of keys)".into() })?,
        ),
        None => None,
    };
    let model = form.text("model");
    let req = ExtractRequest {
        model: model.clone(),
        task: ExtractTask::parse(form.text("task").as_deref())?,
        prompts: form.text("prompts").map(|p| Prompts::Joined(p).list()).unwrap_or_default(),
        schema,
        llm_model: form.text("llm_model"),
        embedding_model: None,
        ocr: ocr_options(form.text("ocr_model"), form.text("languages").map(|l| Languages::Joined(l).codes()).unwrap_or_default(), false),
    };
    let (out, errors) = call(&st, move |lf| lf.extract_document(&docs, &req)).await?;
    all_failed(&out.pages, &errors)?;
    Ok(Json(ExtractResponse::new(out, errors, model)))
}

fn json_documents(images: Option<Vec<String>>, file_id: Option<String>) -> Result<Vec<DocumentInput>, Error> {
    let mut docs = decode_images(&images.unwrap_or_default())?;
    if let Some(id) = file_id.filter(|s| !s.trim().is_empty()) {
        docs.push(DocumentInput::FileId(id.trim().to_string()));
    }
    if docs.is_empty() {
        return Err(Error::InvalidField { field: "images".into(), reason: "or file_id is required".into() });
    }
    Ok(docs)
}

/// OCR base64 images or a stored file.
#[utoipa::path(post, path = "/v1/ocr", tag = "runtime", request_body = OcrRequest,
    responses((status = 200, body = OcrResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn runtime_ocr(State(st): State<AppState>, Json(req): Json<OcrRequest>) -> ApiResult<Json<OcrResponse>> {
    let docs = json_documents(req.images, req.file_id)?;
    let opts = ocr_options(req.model.clone(), req.languages.map(Languages::codes).unwrap_or_default(), req.force_ocr.unwrap_or(false));
    let (out, errors) = call(&st, move |lf| lf.ocr(&docs, &opts)).await?;
    all_failed(&out.pages, &errors)?;
    Ok(Json(OcrResponse::new(out, errors, req.model, req.return_boxes.unwrap_or(false))))
}

/// Extract from base64 images or a stored file.
#[utoipa::path(post, path = "/v1/documents/extract", tag = "runtime", request_body = ExtractRequestDto,
    responses((status = 200, body = ExtractResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn runtime_extract(State(st): State<AppState>, Json(req): Json<ExtractRequestDto>) -> ApiResult<Json<ExtractResponse>> {
    let docs = json_documents(req.images, req.file_id)?;
    let model = req.model.clone();
    let core = ExtractRequest {
        model: req.model,
        task: ExtractTask::parse(req.task.as_deref())?,
        prompts: req.prompts.map(Prompts::list).unwrap_or_default(),
        schema: req.schema,
        llm_model: req.llm_model,
        embedding_model: None,
        ocr: ocr_options(req.ocr_model, req.languages.map(Languages::codes).unwrap_or_default(), false),
    };
    let (out, errors) = call(&st, move |lf| lf.extract_document(&docs, &core)).await?;
    all_failed(&out.pages, &errors)?;
    Ok(Json(ExtractResponse::new(out, errors, model)))
}

/// Store a file for later OCR or extraction (multipart `file`; `convert_pdf` and
/// `pdf_dpi` are accepted: PDF pages are read from their text layer or images).
#[utoipa::path(post, path = "/v1/files", tag = "runtime",
    request_body(content_type = "multipart/form-data", description = "`file`"),
    responses((status = 200, body = FileDto), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_file(State(st): State<AppState>, mp: Multipart) -> ApiResult<Json<FileDto>> {
    let mut form = read_form(&st, mp).await?;
    let Some(DocumentInput::Bytes { name, bytes }) = form.files.pop() else {
        return Err(Error::InvalidField { field: "file".into(), reason: "is required".into() }.into());
    };
    let f = call(&st, move |lf| lf.files().put(&name, &bytes, None)).await?;
    Ok(Json(f.into()))
}

/// Files not yet expired, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "runtime", responses((status = 200, body = FileList)))]
async fn list_files(State(st): State<AppState>) -> ApiResult<Json<FileList>> {
    let files = call(&st, |lf| lf.files().list()).await?;
    Ok(Json(FileList { object: crate::dto::LIST, data: files.into_iter().map(Into::into).collect() }))
}

/// One file's metadata.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "runtime", params(("file_id" = String, Path)),
    responses((status = 200, body = FileDto), (status = 404, body = ErrorBody)))]
async fn get_file(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<FileDto>> {
    Ok(Json(call(&st, move |lf| lf.files().get(&id)).await?.into()))
}

/// Delete a file.
#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "runtime", params(("file_id" = String, Path)),
    responses((status = 200, body = FileDeleted), (status = 404, body = ErrorBody)))]
async fn delete_file(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<FileDeleted>> {
    let f = call(&st, move |lf| lf.files().delete(&id)).await?;
    Ok(Json(FileDeleted { id: f.id, object: "file", deleted: true }))
}

/// The file's pages as base64 PNG images.
#[utoipa::path(get, path = "/v1/files/{file_id}/images", tag = "runtime", params(("file_id" = String, Path)),
    responses((status = 200, body = PageImages), (status = 404, body = ErrorBody)))]
async fn file_images(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PageImages>> {
    let (f, pages) = call(&st, move |lf| lf.files().page_images(&id)).await?;
    Ok(Json(PageImages::new(f, pages)))
}
