//! The `ocrs` crate's engine (its own detection and recognition models, greyscale,
//! Latin alphabet), when those models are in the model cache.
//!
//! Detection runs once: the text probability map from ocrs gives both the word
//! boxes (thresholded regions, as ocrs itself finds them) and each line's confidence,
//! the mean of its words' mean text probability (ocrs's recogniser reports no
//! per-character probabilities).

use super::ppocr::{line_from_rect, mean_inside};
use super::{sort_reading_order, OcrEngine, OcrLine};
use crate::error::{Error, Result};
use image::RgbImage;
use ocrs::{ImageSource, OcrEngineParams, TextItem};
use rten_imageproc::{find_contours, min_area_rect, simplify_polygon, PointF, RetrievalMode, RotatedRect};
use rten_tensor::prelude::*;
use std::path::Path;

/// An ocrs engine.
pub struct Ocrs {
    engine: ocrs::OcrEngine,
}

impl std::fmt::Debug for Ocrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ocrs")
    }
}

impl Ocrs {
    /// Load ocrs's detection and recognition models (`.rten` or `.onnx`).
    pub fn load(detection: &Path, recognition: &Path) -> Result<Self> {
        let load = |p: &Path| {
            rten::Model::load_file(p).map_err(|e| Error::NotAvailable {
                what: format!("ocrs model {}", p.file_name().and_then(|n| n.to_str()).unwrap_or("?")),
                reason: format!("could not be loaded: {e}"),
            })
        };
        let engine =
            ocrs::OcrEngine::new(OcrEngineParams { detection_model: Some(load(detection)?), recognition_model: Some(load(recognition)?), ..Default::default() })
                .map_err(|e| Error::NotAvailable { what: "ocrs models".into(), reason: e.to_string() })?;
        Ok(Self { engine })
    }
}

/// ocrs's word-finding rules: regions above the threshold, simplified, boxed, grown by
/// 3 pixels, at least 100 square pixels.
fn word_rects(prob: &rten_tensor::NdTensor<f32, 2>, threshold: f32) -> Vec<RotatedRect> {
    let mask = prob.map(|p| *p > threshold);
    find_contours(mask.view(), RetrievalMode::External)
        .iter()
        .filter_map(|poly| {
            let pts: Vec<PointF> = poly.iter().map(|p| p.to_f32()).collect();
            let simplified = simplify_polygon(&pts, 2.0);
            min_area_rect(&simplified).map(|mut r| {
                r.resize(r.width() + 6.0, r.height() + 6.0);
                r
            })
        })
        .filter(|r| r.area() >= 100.0)
        .collect()
}

impl OcrEngine for Ocrs {
    fn name(&self) -> &str {
        "ocrs"
    }

    fn reads_language(&self, code: &str) -> bool {
        code == "en"
    }

    fn scripts(&self) -> &str {
        "English (Latin letters without accents)"
    }

    fn recognize(&self, img: &RgbImage) -> Result<Vec<OcrLine>> {
        let fail = |e: anyhow::Error| Error::Internal(format!("ocrs failed: {e}"));
        let source = ImageSource::from_bytes(img.as_raw(), img.dimensions()).map_err(|e| Error::Internal(format!("ocrs input: {e}")))?;
        let input = self.engine.prepare_input(source).map_err(fail)?;
        let prob = self.engine.detect_text_pixels(&input).map_err(fail)?;
        let words = word_rects(&prob, self.engine.detection_threshold());
        let lines = self.engine.find_text_lines(&input, &words);
        let texts = self.engine.recognize_text(&input, &lines).map_err(fail)?;
        let [ph, pw] = prob.shape();
        let data = prob.to_vec();
        let mut out = Vec::new();
        for (words, text) in lines.iter().zip(texts) {
            let Some(text) = text else { continue };
            let s = text.to_string().trim().to_string();
            if s.is_empty() {
                continue;
            }
            let confidence = if words.is_empty() { 0.0 } else { words.iter().map(|w| mean_inside(&data, pw, ph, w)).sum::<f32>() / words.len() as f32 };
            out.push(line_from_rect(&text.rotated_rect(), s, confidence));
        }
        sort_reading_order(&mut out);
        Ok(out)
    }
}
