//! Bodies of OCR, document extraction and the runtime's files.

use super::LIST;
use base64::Engine as _;
use llamafarm_core::vision::extract::{ExtractOutput, ExtractTask};
use llamafarm_core::vision::files::StoredFile;
use llamafarm_core::vision::{DocumentInput, OcrOutput, PageError};
use llamafarm_core::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The most images one request may carry.
pub(crate) const MAX_IMAGES: usize = 100;

/// Decode base64 images (plain or `data:image/...;base64,` URLs; standard or URL-safe
/// alphabet) into documents.
pub(crate) fn decode_images(images: &[String]) -> Result<Vec<DocumentInput>, Error> {
    if images.len() > MAX_IMAGES {
        return Err(Error::InvalidField { field: "images".into(), reason: format!("lists {} images; at most {MAX_IMAGES} per request", images.len()) });
    }
    images
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            let s = match s.strip_prefix("data:") {
                Some(rest) => rest.split_once(',').map(|(_, d)| d).unwrap_or(""),
                None => s,
            };
            let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&clean))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&clean))
                .map_err(|_| Error::InvalidField { field: format!("images[{i}]"), reason: "is not valid base64".into() })?;
            Ok(DocumentInput::Bytes { name: format!("images[{i}]"), bytes })
        })
        .collect()
}

/// `languages`: a list, or one comma-separated string.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub(crate) enum Languages {
    /// `["en", "fr"]`.
    List(Vec<String>),
    /// `"en,fr"`.
    Joined(String),
}

impl Languages {
    pub(crate) fn codes(self) -> Vec<String> {
        match self {
            Languages::List(v) => v,
            Languages::Joined(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
        }
    }
}

/// `prompts`: a list, or one comma-separated string.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub(crate) enum Prompts {
    /// `["What is the total?"]`.
    List(Vec<String>),
    /// `"What is the total?,What is the date?"`.
    Joined(String),
}

impl Prompts {
    pub(crate) fn list(self) -> Vec<String> {
        match self {
            Prompts::List(v) => v,
            // A form field may carry a JSON list (prompts with commas), else comma-separated.
            Prompts::Joined(s) if s.trim_start().starts_with('[') => serde_json::from_str(&s).unwrap_or_else(|_| vec![s]),
            Prompts::Joined(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
        }
    }
}

/// Body of the runtime's `POST /v1/ocr`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OcrRequest {
    /// `surya` (default), `paddleocr`, `easyocr`, `tesseract` (PP-OCR, or Tesseract itself in a build with `ocr-tesseract`) or `ocrs`.
    #[serde(default)]
    pub(crate) model: Option<String>,
    /// Base64 images (or `data:` URLs); PDFs and TIFFs are accepted too.
    #[serde(default)]
    pub(crate) images: Option<Vec<String>>,
    /// A file from `POST /v1/files`, instead of `images`.
    #[serde(default)]
    pub(crate) file_id: Option<String>,
    /// ISO 639-1 codes (default `en`).
    #[serde(default)]
    pub(crate) languages: Option<Languages>,
    /// Return each line's box.
    #[serde(default)]
    pub(crate) return_boxes: Option<bool>,
    /// OCR PDF pages that have a text layer too (default: read the text layer).
    #[serde(default)]
    pub(crate) force_ocr: Option<bool>,
}

/// Body of the runtime's `POST /v1/documents/extract`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtractRequestDto {
    /// The model asked for (Donut/LayoutLM ids are accepted: the OCR + LLM pipeline runs, and `note` says so).
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) images: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) file_id: Option<String>,
    /// Questions (`vqa`) or labels (`classification`).
    #[serde(default)]
    pub(crate) prompts: Option<Prompts>,
    /// `extraction` (default), `vqa` or `classification`.
    #[serde(default)]
    pub(crate) task: Option<String>,
    /// Keys to extract: a JSON schema with `properties`, or a list of keys.
    #[serde(default)]
    pub(crate) schema: Option<Value>,
    /// The local chat model that answers (default: the default chat model).
    #[serde(default)]
    pub(crate) llm_model: Option<String>,
    /// The OCR engine that reads the pages (default PP-OCR).
    #[serde(default)]
    pub(crate) ocr_model: Option<String>,
    #[serde(default)]
    pub(crate) languages: Option<Languages>,
}

/// A line's box.
#[derive(Serialize, ToSchema)]
pub(crate) struct OcrBox {
    pub(crate) x1: f32,
    pub(crate) y1: f32,
    pub(crate) x2: f32,
    pub(crate) y2: f32,
    pub(crate) text: String,
    pub(crate) confidence: f32,
    /// The (possibly rotated) quadrilateral, clockwise from the top-left.
    pub(crate) polygon: [[f32; 2]; 4],
}

/// One page's OCR.
#[derive(Serialize, ToSchema)]
pub(crate) struct OcrItem {
    pub(crate) index: usize,
    pub(crate) text: String,
    pub(crate) confidence: f32,
    /// Where the text came from: the OCR engine, or `pdf-text-layer`.
    pub(crate) source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) boxes: Option<Vec<OcrBox>>,
}

/// A page that could not be read.
#[derive(Serialize, ToSchema)]
pub(crate) struct PageErrorDto {
    pub(crate) index: usize,
    pub(crate) detail: String,
}

impl From<PageError> for PageErrorDto {
    fn from(e: PageError) -> Self {
        Self { index: e.index, detail: e.reason }
    }
}

/// Usage of an OCR call.
#[derive(Serialize, ToSchema)]
pub(crate) struct OcrUsage {
    pub(crate) images_processed: usize,
}

/// Response of the OCR endpoints.
#[derive(Serialize, ToSchema)]
pub(crate) struct OcrResponse {
    /// `list`.
    pub(crate) object: &'static str,
    pub(crate) data: Vec<OcrItem>,
    /// The model the request named (`surya` by default).
    pub(crate) model: String,
    /// The engine that ran.
    pub(crate) engine: String,
    pub(crate) usage: OcrUsage,
    /// Pages that could not be read (the others are in `data`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<PageErrorDto>,
}

impl OcrResponse {
    pub(crate) fn new(out: OcrOutput, errors: Vec<PageError>, model: Option<String>, boxes: bool) -> Self {
        let n = out.pages.len();
        let data = out
            .pages
            .into_iter()
            .map(|p| OcrItem {
                index: p.index,
                text: p.text,
                confidence: p.confidence,
                source: p.source,
                boxes: boxes.then(|| {
                    p.lines
                        .into_iter()
                        .map(|l| OcrBox { x1: l.bbox[0], y1: l.bbox[1], x2: l.bbox[2], y2: l.bbox[3], text: l.text, confidence: l.confidence, polygon: l.polygon })
                        .collect()
                }),
            })
            .collect();
        Self {
            object: LIST,
            data,
            model: model.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| "surya".into()),
            engine: out.engine,
            usage: OcrUsage { images_processed: n },
            errors: errors.into_iter().map(Into::into).collect(),
        }
    }
}

/// One extracted field.
#[derive(Serialize, ToSchema)]
pub(crate) struct FieldDto {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) confidence: f32,
    /// left, top, right, bottom in page pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bbox: Option<[f32; 4]>,
}

/// One page's extraction.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExtractItem {
    pub(crate) index: usize,
    pub(crate) confidence: f32,
    pub(crate) text: String,
    pub(crate) fields: Vec<FieldDto>,
    /// Classification: every label's score.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) all_scores: Option<serde_json::Map<String, Value>>,
}

/// Usage of an extraction call.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExtractUsage {
    pub(crate) documents_processed: usize,
}

/// Response of the extraction endpoints.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExtractResponse {
    /// `list`.
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ExtractItem>,
    /// The model the request named.
    pub(crate) model: String,
    /// `extraction`, `vqa` or `classification`.
    pub(crate) task: String,
    /// What ran: `ocr+layout`, `ocr+llm` (questions), `ocr+llm+json` (fields under a schema) or `ocr+embeddings`.
    pub(crate) pipeline: String,
    /// The OCR engine.
    pub(crate) engine: String,
    /// The chat or embedding model that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_used: Option<String>,
    /// Why the named model did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    pub(crate) usage: ExtractUsage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<PageErrorDto>,
}

impl ExtractResponse {
    pub(crate) fn new(out: ExtractOutput, errors: Vec<PageError>, model: Option<String>) -> Self {
        let task = match out.task {
            ExtractTask::Extraction => "extraction",
            ExtractTask::Vqa => "vqa",
            ExtractTask::Classification => "classification",
        };
        let n = out.pages.len();
        Self {
            object: LIST,
            data: out
                .pages
                .into_iter()
                .map(|p| ExtractItem {
                    index: p.index,
                    confidence: p.confidence,
                    text: p.text,
                    fields: p.fields.into_iter().map(|f| FieldDto { key: f.key, value: f.value, confidence: f.confidence, bbox: f.bbox }).collect(),
                    all_scores: p.all_scores,
                })
                .collect(),
            model: model.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| "ocr+llm".into()),
            task: task.into(),
            pipeline: out.pipeline,
            engine: out.engine,
            model_used: out.model_used,
            note: out.note,
            usage: ExtractUsage { documents_processed: n },
            errors: errors.into_iter().map(Into::into).collect(),
        }
    }
}

/// A stored file (`POST/GET /v1/files`).
#[derive(Serialize, ToSchema)]
pub(crate) struct FileDto {
    pub(crate) id: String,
    /// `file`.
    pub(crate) object: &'static str,
    pub(crate) filename: String,
    pub(crate) bytes: u64,
    pub(crate) content_type: String,
    pub(crate) page_count: usize,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl From<StoredFile> for FileDto {
    fn from(f: StoredFile) -> Self {
        Self {
            id: f.id,
            object: "file",
            filename: f.filename,
            bytes: f.bytes,
            content_type: f.content_type,
            page_count: f.page_count,
            created_at: f.created_at,
            expires_at: f.expires_at,
        }
    }
}

/// `GET /v1/files`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileList {
    /// `list`.
    pub(crate) object: &'static str,
    pub(crate) data: Vec<FileDto>,
}

/// `DELETE /v1/files/{id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileDeleted {
    pub(crate) id: String,
    /// `file`.
    pub(crate) object: &'static str,
    pub(crate) deleted: bool,
}

/// One page image.
#[derive(Serialize, ToSchema)]
pub(crate) struct PageImage {
    pub(crate) index: usize,
    /// Base64 PNG.
    pub(crate) image: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `image/png`.
    pub(crate) mime_type: &'static str,
}

/// `GET /v1/files/{id}/images`.
#[derive(Serialize, ToSchema)]
pub(crate) struct PageImages {
    /// `list`.
    pub(crate) object: &'static str,
    pub(crate) file_id: String,
    pub(crate) page_count: usize,
    pub(crate) data: Vec<PageImage>,
}

impl PageImages {
    pub(crate) fn new(f: StoredFile, pages: Vec<(usize, Vec<u8>, u32, u32)>) -> Self {
        Self {
            object: LIST,
            file_id: f.id,
            page_count: f.page_count,
            data: pages
                .into_iter()
                .map(|(index, png, width, height)| PageImage {
                    index,
                    image: base64::engine::general_purpose::STANDARD.encode(png),
                    width,
                    height,
                    mime_type: "image/png",
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_images_accept_data_urls_and_refuse_garbage() {
        let docs = decode_images(&["data:image/png;base64,aGVsbG8=".into(), "aGVsbG8".into()]).unwrap();
        assert!(matches!(&docs[0], DocumentInput::Bytes { bytes, .. } if bytes == b"hello"));
        assert!(matches!(&docs[1], DocumentInput::Bytes { bytes, .. } if bytes == b"hello"));
        let e = decode_images(&["***".into()]).unwrap_err().to_string();
        assert_eq!(e, "images[0] is not valid base64");
    }
}
