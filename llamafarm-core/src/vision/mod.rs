//! Vision: OCR and document extraction.
//!
//! An [`OcrEngine`] turns one page image into text lines with boxes and confidences.
//! Engines:
//! - [`ppocr::PpOcr`] (the default): PaddleOCR's detection (DB) and recognition (CTC)
//!   models run on rten: the PP-OCRv6 small models `scripts/fetch-models.sh` fetches
//!   (`llamafarm-rs/PP-OCRv6-small-rten`), or any PP-OCR det/rec pair in `.rten` or
//!   `.onnx` form with its dictionary; with PaddleOCR's text-line angle classifier
//!   (`llamafarm-rs/PP-OCR-mobile-v2-cls`, also fetched) when it is in the cache.
//! - [`ocrs_engine::Ocrs`]: the `ocrs` crate's engine, when its detection and recognition
//!   models are in the model cache (`robertknight/ocrs`).
//! - `tesseract_engine::Tesseract` (the `ocr-tesseract` feature): the system's Tesseract 5
//!   and its installed language data.
//!
//! [`Vision`] owns the engines (loaded on first use, kept for the process), maps the
//! reference's model names onto them ([`EngineChoice::from_model`]) and runs pages
//! ([`input::load_pages`] decodes images, multi-page TIFFs and PDFs). A PDF page with a
//! text layer is read from it; only image pages are OCR'd.

pub mod extract;
pub mod files;
pub mod input;
pub mod ocrs_engine;
pub mod ppocr;
#[cfg(feature = "ocr-tesseract")]
pub mod tesseract_engine;

use crate::error::{Error, Result};
use crate::model_cache::ModelCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use input::{load_pages, Page, PageContent};

/// One recognised line of text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OcrLine {
    /// The text.
    pub text: String,
    /// Mean per-character probability, 0..1.
    pub confidence: f32,
    /// Axis-aligned box in page pixels: left, top, right, bottom.
    pub bbox: [f32; 4],
    /// The line's (possibly rotated) quadrilateral, clockwise from the top-left, `[x, y]`.
    pub polygon: [[f32; 2]; 4],
}

/// The text of one page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OcrPage {
    /// 0-based position among all pages of the request.
    pub index: usize,
    /// Lines joined in reading order, one per row.
    pub text: String,
    /// Mean line confidence (1.0 for a PDF text layer; 0.0 when no text was found).
    pub confidence: f32,
    /// Lines in reading order.
    pub lines: Vec<OcrLine>,
    /// Where the text came from: the engine's name, or `pdf-text-layer`.
    pub source: String,
    /// Page size in pixels (0 for a text-layer page).
    pub width: u32,
    /// Page height in pixels.
    pub height: u32,
}

/// An OCR engine: one page image in, lines out.
pub trait OcrEngine: Send + Sync {
    /// The engine's name as responses report it (`ppocr-v6-small`, `ocrs`).
    fn name(&self) -> &str;
    /// Whether the engine reads a language (ISO 639-1 code, lower case).
    fn reads_language(&self, code: &str) -> bool;
    /// The scripts it reads, for messages (`Latin, Chinese, Japanese and Greek`).
    fn scripts(&self) -> &str;
    /// Why it cannot read `code` (after [`reads_language`](Self::reads_language) said no),
    /// for the 422's message.
    fn why_not(&self, code: &str) -> String {
        let _ = code;
        format!("it reads {} script", self.scripts())
    }
    /// An engine reading `languages` (ISO 639-1 codes it reads), when it is not this
    /// one: engines whose models read all their languages at once return `None`.
    fn with_languages(&self, languages: &[String]) -> Option<Arc<dyn OcrEngine>> {
        let _ = languages;
        None
    }
    /// Recognise the text of one image, lines in reading order.
    fn recognize(&self, image: &image::RgbImage) -> Result<Vec<OcrLine>>;
}

/// The engines a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineChoice {
    /// PaddleOCR detection + recognition on rten.
    PpOcr,
    /// The `ocrs` crate's models.
    Ocrs,
    /// Tesseract 5 (built with the `ocr-tesseract` feature).
    Tesseract,
}

impl EngineChoice {
    /// The name that selects it.
    pub fn model_name(self) -> &'static str {
        match self {
            Self::PpOcr => "paddleocr",
            Self::Ocrs => "ocrs",
            Self::Tesseract => "tesseract",
        }
    }

    /// The engine a request's `model` selects. The reference's names map to the
    /// closest engine built here: `surya`, `paddleocr`, `easyocr` (and no model) run
    /// PP-OCR; `ocrs` runs ocrs; `tesseract` runs Tesseract when the `ocr-tesseract`
    /// feature is built, PP-OCR otherwise. Anything else is a 422.
    pub fn from_model(model: Option<&str>) -> Result<Self> {
        let m = model.map(|m| m.trim().to_ascii_lowercase()).unwrap_or_default();
        match m.as_str() {
            "tesseract" if cfg!(feature = "ocr-tesseract") => Ok(Self::Tesseract),
            "" | "default" | "surya" | "paddleocr" | "paddle" | "ppocr" | "pp-ocr" | "pp-ocrv6" | "easyocr" | "tesseract" | "rapidocr" => Ok(Self::PpOcr),
            "ocrs" => Ok(Self::Ocrs),
            _ => Err(Error::InvalidField {
                field: "model".into(),
                reason: format!("'{}' is not an OCR model (use one of: surya, paddleocr, easyocr, tesseract, ocrs)", model.unwrap_or_default()),
            }),
        }
    }
}

/// What an OCR call asks for.
#[derive(Debug, Clone, Default)]
pub struct OcrOptions {
    /// The model name of the request (see [`EngineChoice::from_model`]).
    pub model: Option<String>,
    /// ISO 639-1 language codes; empty means English.
    pub languages: Vec<String>,
    /// Read PDF pages that have a text layer from it (default), or OCR every page.
    pub force_ocr: bool,
}

/// The result of OCR over a set of pages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OcrOutput {
    /// One entry per page, in order.
    pub pages: Vec<OcrPage>,
    /// The engine that ran.
    pub engine: String,
}

/// A page that could not be read, with the reason; the other pages still are.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PageError {
    /// 0-based page index.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// Model ids of the engines in the model cache.
pub const PPOCR_MODEL: &str = "llamafarm-rs/PP-OCRv6-small-rten";
/// PaddleOCR's text-line angle classifier (upright or turned 180 degrees), attached to
/// the PP-OCR engine when it is in the model cache.
pub const PPOCR_CLS_MODEL: &str = "llamafarm-rs/PP-OCR-mobile-v2-cls";
/// Where the `ocrs` engine's models are looked up (`text-detection.rten`, `text-recognition.rten`).
pub const OCRS_MODEL: &str = "robertknight/ocrs";

/// The OCR engines of one library instance, loaded on first use.
pub struct Vision {
    models: ModelCache,
    engines: Mutex<HashMap<EngineChoice, Arc<dyn OcrEngine>>>,
}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vision").field("hub", &self.models.hub_dir()).finish()
    }
}

impl Vision {
    /// Engines resolved from `models`.
    pub fn new(models: ModelCache) -> Self {
        Self { models, engines: Mutex::new(HashMap::new()) }
    }

    /// Use `engine` for `choice` instead of loading one from the model cache.
    pub fn install(&self, choice: EngineChoice, engine: Arc<dyn OcrEngine>) {
        self.engines.lock().unwrap_or_else(|p| p.into_inner()).insert(choice, engine);
    }

    /// The engine for `choice`, loading it on first use (503 naming the fetch command
    /// when its models are not in the cache).
    pub fn engine(&self, choice: EngineChoice) -> Result<Arc<dyn OcrEngine>> {
        if let Some(e) = self.engines.lock().unwrap_or_else(|p| p.into_inner()).get(&choice) {
            return Ok(e.clone());
        }
        let engine: Arc<dyn OcrEngine> = match choice {
            EngineChoice::PpOcr => {
                let m = self.models.resolve(PPOCR_MODEL)?;
                let mut engine = ppocr::PpOcr::load_dir(&m.dir)?;
                if let Ok(cls) = self.models.resolve(PPOCR_CLS_MODEL) {
                    engine = engine.with_angle_classifier(&cls.file("ch_ppocr_mobile_v2.0_cls_infer.onnx"))?;
                }
                Arc::new(engine)
            }
            EngineChoice::Ocrs => {
                let m = self.models.resolve(OCRS_MODEL)?;
                Arc::new(ocrs_engine::Ocrs::load(&m.file("text-detection.rten"), &m.file("text-recognition.rten"))?)
            }
            #[cfg(feature = "ocr-tesseract")]
            EngineChoice::Tesseract => Arc::new(tesseract_engine::Tesseract::load(None)?),
            #[cfg(not(feature = "ocr-tesseract"))]
            EngineChoice::Tesseract => {
                return Err(Error::unavailable("the Tesseract engine", "is not built in (build with the ocr-tesseract feature)"));
            }
        };
        let mut map = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(choice).or_insert(engine).clone())
    }

    /// The engine a request selects, after checking its languages.
    pub fn engine_for(&self, opts: &OcrOptions) -> Result<Arc<dyn OcrEngine>> {
        let choice = EngineChoice::from_model(opts.model.as_deref())?;
        let langs = normalize_languages(&opts.languages)?;
        let engine = self.engine(choice)?;
        for l in &langs {
            if !engine.reads_language(l) {
                return Err(Error::InvalidField { field: "languages".into(), reason: format!("'{l}' cannot be read by {} ({})", engine.name(), engine.why_not(l)) });
            }
        }
        Ok(engine.with_languages(&langs).unwrap_or(engine))
    }

    /// OCR decoded pages. A page that failed to decode is reported in the errors and
    /// skipped; pages with a text layer are read from it unless `force_ocr`.
    pub fn ocr_pages(&self, pages: &[Page], opts: &OcrOptions) -> Result<(OcrOutput, Vec<PageError>)> {
        let needs_engine = pages.iter().any(|p| matches!(p.content, PageContent::Image(_)) || (opts.force_ocr && p.image.is_some()));
        // Check the request (model name, languages) even when no page needs OCR.
        let choice = EngineChoice::from_model(opts.model.as_deref())?;
        normalize_languages(&opts.languages)?;
        let engine = if needs_engine { Some(self.engine_for(opts)?) } else { None };
        let mut out = Vec::with_capacity(pages.len());
        let mut errors = Vec::new();
        for p in pages {
            match (&p.content, &engine) {
                (PageContent::Failed(reason), _) => errors.push(PageError { index: p.index, reason: reason.clone() }),
                (PageContent::Text(t), _) if !(opts.force_ocr && p.image.is_some()) => {
                    out.push(OcrPage { index: p.index, text: t.clone(), confidence: 1.0, lines: Vec::new(), source: "pdf-text-layer".into(), width: 0, height: 0 })
                }
                (PageContent::Text(_), Some(e)) => {
                    let img = p.image.as_ref().expect("checked above");
                    out.push(page_from_lines(p.index, e.recognize(img)?, e.name(), img));
                }
                (PageContent::Image(img), Some(e)) => out.push(page_from_lines(p.index, e.recognize(img)?, e.name(), img)),
                (_, None) => {}
            }
        }
        let engine_name = match &engine {
            Some(e) => e.name().to_string(),
            None if choice != EngineChoice::PpOcr => choice.model_name().into(),
            None => "pdf-text-layer".into(),
        };
        Ok((OcrOutput { pages: out, engine: engine_name }, errors))
    }

    /// Decode `bytes` (an image, a multi-page TIFF or a PDF) and OCR every page.
    pub fn ocr_bytes(&self, bytes: &[u8], name: &str, opts: &OcrOptions) -> Result<(OcrOutput, Vec<PageError>)> {
        let pages = load_pages(bytes, name, 0)?;
        self.ocr_pages(&pages, opts)
    }
}

/// Lower-case the codes, map common aliases (`eng` → `en`, `ch` → `zh`), refuse
/// codes that are not languages.
pub fn normalize_languages(langs: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for l in langs.iter().flat_map(|l| l.split(',')) {
        let l = l.trim().to_ascii_lowercase();
        if l.is_empty() {
            continue;
        }
        let code = match l.as_str() {
            "eng" | "english" => "en",
            "ch" | "chi_sim" | "chi_tra" | "chinese" | "zh-cn" | "zh-tw" | "ch_sim" | "ch_tra" => "zh",
            "jpn" | "japan" | "japanese" => "ja",
            "fra" | "fre" | "french" => "fr",
            "deu" | "ger" | "german" => "de",
            "spa" | "spanish" => "es",
            "ita" | "italian" => "it",
            "por" | "portuguese" => "pt",
            "rus" | "russian" => "ru",
            "ara" | "arabic" => "ar",
            "kor" | "korean" => "ko",
            other => other,
        };
        if !KNOWN_LANGUAGES.contains(&code) {
            return Err(Error::InvalidField { field: "languages".into(), reason: format!("'{l}' is not a language code (use ISO 639-1 codes such as en, fr, zh)") });
        }
        if !out.iter().any(|o| o == code) {
            out.push(code.to_string());
        }
    }
    Ok(out)
}

/// Languages written in Latin script (as far as OCR is concerned).
pub const LATIN_LANGUAGES: &[&str] = &[
    "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "nb", "nn", "fi", "is", "pl", "cs", "sk", "sl", "hr", "bs", "ro", "hu", "tr", "et", "lv", "lt",
    "id", "ms", "tl", "vi", "ca", "eu", "gl", "ga", "cy", "mt", "af", "sw", "la", "sq", "az", "uz", "eo", "lb", "oc",
];

const KNOWN_LANGUAGES: &[&str] = &[
    "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "nb", "nn", "fi", "is", "pl", "cs", "sk", "sl", "hr", "bs", "ro", "hu", "tr", "et", "lv", "lt",
    "id", "ms", "tl", "vi", "ca", "eu", "gl", "ga", "cy", "mt", "af", "sw", "la", "sq", "az", "uz", "eo", "lb", "oc", "zh", "ja", "ko", "el", "ru", "uk", "bg",
    "sr", "mk", "be", "kk", "mn", "ar", "fa", "ur", "he", "yi", "hi", "mr", "ne", "bn", "ta", "te", "kn", "ml", "gu", "pa", "th", "lo", "km", "my", "ka", "hy",
    "am", "si",
];

/// Join lines into page text: lines whose vertical centres are within half a line
/// height of each other form one row, joined by spaces; rows by newlines.
pub fn page_from_lines(index: usize, lines: Vec<OcrLine>, engine: &str, img: &image::RgbImage) -> OcrPage {
    let confidence = if lines.is_empty() { 0.0 } else { lines.iter().map(|l| l.confidence).sum::<f32>() / lines.len() as f32 };
    OcrPage { index, text: rows_text(&lines), confidence, lines, source: engine.to_string(), width: img.width(), height: img.height() }
}

/// The text of lines in reading order, lines on one row joined by a space.
pub fn rows_text(lines: &[OcrLine]) -> String {
    let mut text = String::new();
    let mut row_center: Option<(f32, f32)> = None;
    for l in lines {
        let (c, h) = ((l.bbox[1] + l.bbox[3]) / 2.0, (l.bbox[3] - l.bbox[1]).max(1.0));
        match row_center {
            Some((rc, rh)) if (c - rc).abs() < 0.5 * rh.min(h) => text.push(' '),
            Some(_) => text.push('\n'),
            None => {}
        }
        text.push_str(&l.text);
        row_center = Some((c, h));
    }
    text
}

/// Order lines for reading: top to bottom by row, left to right within a row.
pub fn sort_reading_order(lines: &mut [OcrLine]) {
    lines.sort_by(|a, b| a.bbox[1].total_cmp(&b.bbox[1]));
    // Bubble lines that sit on the same row as their predecessor into left-to-right order.
    for i in 1..lines.len() {
        let mut j = i;
        while j > 0 {
            let (p, c) = (&lines[j - 1], &lines[j]);
            let (pc, cc) = ((p.bbox[1] + p.bbox[3]) / 2.0, (c.bbox[1] + c.bbox[3]) / 2.0);
            let h = (p.bbox[3] - p.bbox[1]).min(c.bbox[3] - c.bbox[1]).max(1.0);
            if (pc - cc).abs() < 0.5 * h && c.bbox[0] < p.bbox[0] {
                lines.swap(j - 1, j);
                j -= 1;
            } else {
                break;
            }
        }
    }
}

/// Word-level precision, recall and F1 of OCR text against the truth: upper-cased
/// alphanumeric tokens compared as multisets (the SROIE convention).
pub fn word_f1(predicted: &str, truth: &str) -> (f64, f64, f64) {
    fn words(s: &str) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for w in s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            *m.entry(w.to_uppercase()).or_insert(0) += 1;
        }
        m
    }
    let (p, t) = (words(predicted), words(truth));
    let common: usize = p.iter().map(|(w, n)| (*n).min(*t.get(w).unwrap_or(&0))).sum();
    let (np, nt) = (p.values().sum::<usize>(), t.values().sum::<usize>());
    let precision = if np == 0 { 0.0 } else { common as f64 / np as f64 };
    let recall = if nt == 0 { 0.0 } else { common as f64 / nt as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    (precision, recall, f1)
}

/// One document of a request.
#[derive(Debug, Clone)]
pub enum DocumentInput {
    /// Uploaded or decoded bytes with a name for messages.
    Bytes {
        /// The file name (may be empty).
        name: String,
        /// The content.
        bytes: Vec<u8>,
    },
    /// A file in the runtime's file store.
    FileId(String),
}

/// An extraction request (see [`extract`]).
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// The model the caller named (Donut, LayoutLM ids are accepted; see [`extract`]).
    pub model: Option<String>,
    /// What to extract.
    pub task: extract::ExtractTask,
    /// Questions (`vqa`) or labels (`classification`).
    pub prompts: Vec<String>,
    /// Keys to extract (`extraction`): a JSON schema or a list of keys.
    pub schema: Option<serde_json::Value>,
    /// The local chat model that answers (default: the default chat model).
    pub llm_model: Option<String>,
    /// The embedding model that ranks labels (default: the default embedding model).
    pub embedding_model: Option<String>,
    /// How the pages are read.
    pub ocr: OcrOptions,
}

fn default_model(role: &str) -> &'static str {
    crate::DEFAULT_MODELS.iter().find(|(r, _)| *r == role).map(|(_, id)| *id).unwrap_or("")
}

impl crate::LlamaFarm {
    /// Decode the documents of a request into pages, numbered across documents.
    pub fn load_documents(&self, inputs: &[DocumentInput]) -> Result<Vec<Page>> {
        if inputs.is_empty() {
            return Err(Error::InvalidField { field: "file".into(), reason: "or images is required".into() });
        }
        let mut pages = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let got = match input {
                DocumentInput::Bytes { name, bytes } => {
                    let name = if name.is_empty() { format!("images[{i}]") } else { name.clone() };
                    load_pages(bytes, &name, pages.len())?
                }
                DocumentInput::FileId(id) => {
                    let (meta, bytes) = self.files().read(id)?;
                    load_pages(&bytes, &meta.filename, pages.len())?
                }
            };
            pages.extend(got);
            if pages.len() > input::MAX_PAGES {
                return Err(Error::InvalidField { field: "file".into(), reason: format!("the request has more than {} pages", input::MAX_PAGES) });
            }
        }
        Ok(pages)
    }

    /// OCR documents: every page's text, lines, boxes and confidence. Pages that could
    /// not be decoded come back as errors beside the others.
    pub fn ocr(&self, inputs: &[DocumentInput], opts: &OcrOptions) -> Result<(OcrOutput, Vec<PageError>)> {
        let pages = self.load_documents(inputs)?;
        self.vision().ocr_pages(&pages, opts)
    }

    /// Extract fields, answers or a label from documents (see [`extract`]).
    pub fn extract_document(&self, inputs: &[DocumentInput], req: &ExtractRequest) -> Result<(extract::ExtractOutput, Vec<PageError>)> {
        use extract::*;
        let prompts: Vec<String> = req.prompts.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        match req.task {
            ExtractTask::Vqa if prompts.is_empty() => {
                return Err(Error::InvalidField { field: "prompts".into(), reason: "are required for the vqa task (the questions)".into() })
            }
            ExtractTask::Classification if prompts.len() < 2 => {
                return Err(Error::InvalidField { field: "prompts".into(), reason: "must list at least two labels for the classification task".into() })
            }
            _ => {}
        }
        if prompts.len() > 50 {
            return Err(Error::InvalidField { field: "prompts".into(), reason: format!("lists {}; at most 50", prompts.len()) });
        }
        let keys = match (&req.schema, req.task) {
            (Some(s), ExtractTask::Extraction) => Some(schema_keys(s)?),
            _ => None,
        };
        let (ocr, errors) = self.ocr(inputs, &req.ocr)?;
        let note = req.model.as_deref().map(str::trim).filter(|m| !m.is_empty() && EngineChoice::from_model(Some(m)).is_err()).map(|m| {
            format!("'{m}' is not run by this server (Donut and LayoutLM weights are not available); the page was read with {} and answered by the pipeline named in 'pipeline'", ocr.engine)
        });
        let mut pages = Vec::with_capacity(ocr.pages.len());
        let cancel = crate::llm::CancelFlag::new();
        let (pipeline, model_used) = match (req.task, &keys) {
            (ExtractTask::Classification, _) => {
                let model = req.embedding_model.clone().unwrap_or_else(|| default_model("embedding").to_string());
                let embedder = self.embedder(&model)?;
                let labels: Vec<&str> = prompts.iter().map(String::as_str).collect();
                let label_vecs = embedder.embed(&labels)?;
                for p in &ocr.pages {
                    let text = if p.text.trim().is_empty() { " " } else { p.text.as_str() };
                    let v = embedder.embed(&[text])?.pop().unwrap_or_default();
                    let sims: Vec<f32> = label_vecs.iter().map(|l| cosine(l, &v)).collect();
                    let scores = label_scores(&sims, 0.05);
                    let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0);
                    let all: serde_json::Map<String, serde_json::Value> = labels.iter().zip(&scores).map(|(l, s)| (l.to_string(), serde_json::json!(s))).collect();
                    pages.push(ExtractedPage {
                        index: p.index,
                        text: labels[best].to_string(),
                        confidence: scores[best],
                        fields: vec![ExtractField { key: "label".into(), value: labels[best].to_string(), confidence: scores[best], bbox: None }],
                        all_scores: Some(all),
                    });
                }
                ("ocr+embeddings", Some(model))
            }
            (ExtractTask::Extraction, None) => {
                for p in &ocr.pages {
                    let fields = layout_fields(p);
                    let confidence = if fields.is_empty() { 0.0 } else { fields.iter().map(|f| f.confidence).sum::<f32>() / fields.len() as f32 };
                    let text = fields.iter().map(|f| format!("{}: {}", f.key, f.value)).collect::<Vec<_>>().join("\n");
                    pages.push(ExtractedPage { index: p.index, text, confidence, fields, all_scores: None });
                }
                ("ocr+layout", None)
            }
            (ExtractTask::Extraction, Some(keys)) => {
                let (model_id, model) = self.extraction_llm(req)?;
                let schema = answer_schema(req.schema.as_ref().unwrap_or(&serde_json::Value::Null), keys);
                let grammar = crate::llm::Grammar::JsonSchema(schema);
                grammar.check().map_err(|e| match e {
                    Error::InvalidField { reason, .. } => Error::InvalidField { field: "schema".into(), reason },
                    other => other,
                })?;
                // Room for every field at its longest, in the model's tokens.
                let max_tokens = (keys.len() * 64 + 32).min(4096);
                let params = crate::llm::GenerationParams { temperature: Some(0.0), max_tokens, grammar: Some(grammar), ..Default::default() };
                for p in &ocr.pages {
                    let g = model.generate(&fields_prompt(&p.text, keys), &params, &cancel, &mut |_| true)?;
                    let answer = serde_json::from_str::<serde_json::Value>(&g.content).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
                    let fields: Vec<ExtractField> = keys
                        .iter()
                        .map(|k| {
                            let value = answer.get(k).map(field_text).unwrap_or_default();
                            let (confidence, bbox) = grounded_confidence(p, &value);
                            ExtractField { key: k.clone(), value, confidence, bbox }
                        })
                        .collect();
                    let confidence = if fields.is_empty() { 0.0 } else { fields.iter().map(|f| f.confidence).sum::<f32>() / fields.len() as f32 };
                    let text = fields.iter().map(|f| format!("{}: {}", f.key, f.value)).collect::<Vec<_>>().join("\n");
                    pages.push(ExtractedPage { index: p.index, text, confidence, fields, all_scores: None });
                }
                ("ocr+llm+json", Some(model_id))
            }
            (_, _) => {
                let (model_id, model) = self.extraction_llm(req)?;
                let params = crate::llm::GenerationParams { temperature: Some(0.0), max_tokens: 64, ..Default::default() };
                for p in &ocr.pages {
                    let mut fields = Vec::new();
                    let mut answers = Vec::new();
                    for q in &prompts {
                        let g = model.generate(&question_prompt(&p.text, q), &params, &cancel, &mut |_| true)?;
                        let a = clean_answer(&g.content);
                        let (conf, bbox) = grounded_confidence(p, &a);
                        fields.push(ExtractField { key: "question".into(), value: q.clone(), confidence: conf, bbox: None });
                        fields.push(ExtractField { key: "answer".into(), value: a.clone(), confidence: conf, bbox });
                        answers.push(a);
                    }
                    let confidence = if fields.is_empty() { 0.0 } else { fields.iter().map(|f| f.confidence).sum::<f32>() / fields.len() as f32 };
                    pages.push(ExtractedPage { index: p.index, text: answers.join("\n"), confidence, fields, all_scores: None });
                }
                ("ocr+llm", Some(model_id))
            }
        };
        Ok((ExtractOutput { pages, task: req.task, pipeline: pipeline.into(), engine: ocr.engine, model_used, note }, errors))
    }
}

impl crate::LlamaFarm {
    /// The local chat model an extraction request names (default: the default chat model).
    fn extraction_llm(&self, req: &ExtractRequest) -> Result<(String, std::sync::Arc<dyn crate::llm::ChatModel>)> {
        let model_id = req.llm_model.clone().unwrap_or_else(|| default_model("chat").to_string());
        let model = self.llm().get(&crate::llm::ChatModelSpec::local(&model_id, self.llm().settings()), false, self.models())?;
        Ok((model_id, model))
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut d, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    d / (na.sqrt() * nb.sqrt()).max(1e-12)
}

#[cfg(test)]
mod real_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, x: f32, y: f32) -> OcrLine {
        OcrLine { text: text.into(), confidence: 0.9, bbox: [x, y, x + 50.0, y + 20.0], polygon: [[x, y], [x + 50.0, y], [x + 50.0, y + 20.0], [x, y + 20.0]] }
    }

    #[test]
    fn lines_are_read_by_rows_left_to_right() {
        let mut lines = vec![line("total", 10.0, 100.0), line("9.99", 200.0, 102.0), line("SHOP", 10.0, 10.0), line("$", 150.0, 98.0)];
        sort_reading_order(&mut lines);
        assert_eq!(rows_text(&lines), "SHOP\ntotal $ 9.99");
    }

    #[test]
    fn model_names_and_languages_are_checked() {
        assert_eq!(EngineChoice::from_model(Some("surya")).unwrap(), EngineChoice::PpOcr);
        let tesseract = if cfg!(feature = "ocr-tesseract") { EngineChoice::Tesseract } else { EngineChoice::PpOcr };
        assert_eq!(EngineChoice::from_model(Some("Tesseract")).unwrap(), tesseract);
        assert_eq!(EngineChoice::from_model(None).unwrap(), EngineChoice::PpOcr);
        assert_eq!(EngineChoice::from_model(Some("ocrs")).unwrap(), EngineChoice::Ocrs);
        let e = EngineChoice::from_model(Some("gpt-4o")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        assert_eq!(normalize_languages(&["en,FR".into(), "eng".into(), "ch".into()]).unwrap(), vec!["en", "fr", "zh"]);
        assert!(normalize_languages(&["klingon".into()]).is_err());
    }

    #[test]
    fn word_f1_counts_upper_cased_alphanumeric_words() {
        let (p, r, f) = word_f1("Total: $9.99 total", "TOTAL 9.99");
        // predicted words TOTAL, 9, 99, TOTAL; truth TOTAL, 9, 99.
        assert_eq!((p, r), (0.75, 1.0));
        assert!((f - 6.0 / 7.0).abs() < 1e-9);
        assert_eq!(word_f1("", "x"), (0.0, 0.0, 0.0));
    }
}
