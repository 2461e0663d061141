//! `lf vision`: OCR and document extraction through the server's `/v1/vision/*`.

use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum VisionCmd {
    /// Read the text of images and PDFs (one request per file).
    Ocr {
        /// Images (PNG, JPEG, GIF, WebP, BMP, TIFF) or PDFs.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// OCR model: surya (default), paddleocr, easyocr, tesseract (PP-OCR; Tesseract itself in a build with the ocr-tesseract feature) or ocrs.
        #[arg(long)]
        model: Option<String>,
        /// Languages, comma-separated ISO 639-1 codes (default en).
        #[arg(long)]
        languages: Option<String>,
        /// Print each line with its box and confidence.
        #[arg(long)]
        boxes: bool,
    },
    /// Extract fields, answers (vqa) or a label (classification) from a document.
    Extract {
        /// An image or a PDF.
        file: PathBuf,
        /// extraction (default), vqa or classification.
        #[arg(long, default_value = "extraction")]
        task: String,
        /// A question (vqa) or a label (classification); repeat for more.
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// Keys to extract with the LLM, e.g. '["total","date"]' or a JSON schema.
        #[arg(long)]
        schema: Option<String>,
        /// The model to name (Donut/LayoutLM ids run the OCR + LLM pipeline here).
        #[arg(long)]
        model: Option<String>,
    },
}

pub(crate) async fn vision(c: &Client, cmd: VisionCmd, json: bool) -> Result<()> {
    match cmd {
        VisionCmd::Ocr { files, model, languages, boxes } => {
            for f in &files {
                let mut fields = vec![("return_boxes", boxes.to_string())];
                if let Some(m) = &model {
                    fields.push(("model", m.clone()));
                }
                if let Some(l) = &languages {
                    fields.push(("languages", l.clone()));
                }
                let v = c.upload_form("/v1/vision/ocr", f, &fields).await.map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    continue;
                }
                if files.len() > 1 {
                    println!("== {} ({})", f.display(), v["engine"].as_str().unwrap_or("?"));
                }
                for page in v["data"].as_array().into_iter().flatten() {
                    if page["index"].as_u64().unwrap_or(0) > 0 {
                        println!("-- page {}", page["index"].as_u64().unwrap_or(0) + 1);
                    }
                    if boxes {
                        for b in page["boxes"].as_array().into_iter().flatten() {
                            println!(
                                "[{:.0},{:.0},{:.0},{:.0}] {:.2} {}",
                                b["x1"].as_f64().unwrap_or(0.0),
                                b["y1"].as_f64().unwrap_or(0.0),
                                b["x2"].as_f64().unwrap_or(0.0),
                                b["y2"].as_f64().unwrap_or(0.0),
                                b["confidence"].as_f64().unwrap_or(0.0),
                                b["text"].as_str().unwrap_or("")
                            );
                        }
                    } else {
                        println!("{}", page["text"].as_str().unwrap_or(""));
                    }
                }
                for e in v["errors"].as_array().into_iter().flatten() {
                    eprintln!("page {}: {}", e["index"].as_u64().unwrap_or(0) + 1, e["detail"].as_str().unwrap_or(""));
                }
            }
        }
        VisionCmd::Extract { file, task, prompts, schema, model } => {
            let mut fields = vec![("task", task)];
            if !prompts.is_empty() {
                // As a JSON list, so a prompt may hold commas.
                fields.push(("prompts", serde_json::to_string(&prompts)?));
            }
            if let Some(s) = schema {
                fields.push(("schema", s));
            }
            if let Some(m) = model {
                fields.push(("model", m));
            }
            let v = c.upload_form("/v1/vision/documents/extract", &file, &fields).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if let Some(n) = v["note"].as_str() {
                eprintln!("note: {n}");
            }
            for page in v["data"].as_array().into_iter().flatten() {
                for f in page["fields"].as_array().into_iter().flatten() {
                    println!("{}: {} ({:.2})", f["key"].as_str().unwrap_or(""), f["value"].as_str().unwrap_or(""), f["confidence"].as_f64().unwrap_or(0.0));
                }
            }
        }
    }
    Ok(())
}
