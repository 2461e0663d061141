//! PP-OCR on rten: PaddleOCR's text detection (DB) and recognition (CTC) models.
//!
//! Detection: the page, scaled so its short side is at least
//! [`PpOcrParams::det_min_side`] (and its long side at most `det_max_side`), multiples
//! of 32, normalised with ImageNet statistics in BGR order, gives a text probability
//! map. The map is binarised, each connected region's contour gets its minimum-area
//! rectangle (a region filling less than half of it, such as a line touching a diagonal
//! watermark, is eroded and split first), regions whose mean probability is under
//! `box_thresh` are dropped, and
//! the rest are grown by `area * unclip_ratio / perimeter` on every side (the DB
//! paper's unclip) and scaled back to page pixels.
//!
//! Recognition: each rectangle is sampled straight from the page into a
//! `rec_height`-pixel-high strip (rotated boxes are straightened; boxes 1.5 times
//! taller than wide are read as vertical text), strips are batched by aspect ratio and
//! the model's per-step class probabilities are CTC-decoded greedily over the
//! dictionary (class 0 is the blank, the class after the dictionary is a space). A
//! line's confidence is the mean probability of its characters.
//!
//! Angle classification (when a classifier is attached, [`PpOcr::with_angle_classifier`]):
//! each straightened line is classified as upright or turned 180 degrees by PaddleOCR's
//! text-line classifier (48x192 strips in, two probabilities out; a long line as up to
//! three 4:1 windows, averaged). The lines classified with probability above
//! `cls_thresh` vote; when more of them are turned than upright, every line of the page
//! is read the other way up and the page in reverse order, so an upside-down scan reads
//! top to bottom.
//!
//! The contours and rectangles come from `rten-imageproc`, the same routines the
//! `ocrs` engine uses.

use super::{sort_reading_order, OcrEngine, OcrLine};
use crate::error::{Error, Result};
use image::RgbImage;
use rten::{Model, RunOptions, ThreadPool};
use rten_imageproc::{find_contours, min_area_rect, simplify_polygon, PointF, RetrievalMode, RotatedRect, Vec2};
use rten_tensor::prelude::*;
use rten_tensor::NdTensor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Tunables: PaddleOCR's post-processing defaults; the sizes as measured on SROIE
/// (`benches/ocr.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct PpOcrParams {
    /// Pages whose short side is smaller are scaled up to it for detection.
    pub det_min_side: u32,
    /// Larger pages are scaled down so their long side is this, for detection only
    /// (recognition reads the page at full resolution). 960 reads receipts and A4 scans
    /// at 150 dpi and up; more costs time without finding more text on SROIE.
    pub det_max_side: u32,
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability a region needs to be kept.
    pub box_thresh: f32,
    /// How far regions are grown (the model is trained on shrunk regions).
    pub unclip_ratio: f32,
    /// Regions whose short side is smaller (detection pixels) are dropped.
    pub min_size: f32,
    /// Strips per recognition batch (strips are sorted by width; small batches waste
    /// little on padding, and the batches of a page run on all cores at once).
    pub rec_batch: usize,
    /// Lines whose confidence is lower are dropped.
    pub text_score: f32,
    /// Classify the lines as upright or turned 180 degrees (when a classifier is attached).
    pub angle_cls: bool,
    /// Probability above which a line's classification counts in the page's vote.
    pub cls_thresh: f32,
}

impl Default for PpOcrParams {
    fn default() -> Self {
        Self {
            det_min_side: 64,
            det_max_side: 960,
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            min_size: 3.0,
            rec_batch: 4,
            text_score: 0.5,
            angle_cls: true,
            cls_thresh: 0.9,
        }
    }
}

/// A PP-OCR detection + recognition pair.
pub struct PpOcr {
    det: Model,
    rec: Model,
    cls: Option<Model>,
    dict: Vec<String>,
    rec_height: usize,
    name: String,
    pool: Arc<ThreadPool>,
    rec_pools: Vec<Arc<ThreadPool>>,
    /// The tunables; change before sharing the engine.
    pub params: PpOcrParams,
}

impl std::fmt::Debug for PpOcr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PpOcr").field("name", &self.name).field("classes", &(self.dict.len() + 2)).field("angle_cls", &self.cls.is_some()).finish()
    }
}

fn find_file(dir: &Path, part: &str, exts: &[&str]) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    files.sort();
    files.into_iter().find(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
        name.contains(part) && p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e))
    })
}

impl PpOcr {
    /// Load from a directory holding `*det*.rten|onnx`, `*rec*.rten|onnx` and a `*dict*.txt`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let missing = |what: &str| Error::NotAvailable { what: "PP-OCR models".into(), reason: format!("no {what} in the model directory") };
        let det = find_file(dir, "det", &["rten", "onnx"]).ok_or_else(|| missing("detection model (*det*.rten)"))?;
        let rec = find_file(dir, "rec", &["rten", "onnx"]).ok_or_else(|| missing("recognition model (*rec*.rten)"))?;
        let dict = find_file(dir, "dict", &["txt"]).ok_or_else(|| missing("dictionary (*dict*.txt)"))?;
        Self::load(&det, &rec, &dict)
    }

    /// Load a detection model, a recognition model and its dictionary (one character
    /// per line, in class order from class 1).
    pub fn load(det: &Path, rec: &Path, dict: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dict).map_err(|e| Error::io(dict, e))?;
        let dict: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        let name = det.file_stem().and_then(|s| s.to_str()).unwrap_or("PP-OCR").replace("_det", "").replace("det_", "");
        Self::from_models(load_model(det)?, load_model(rec)?, dict, name)
    }

    /// Attach PaddleOCR's text-line angle classifier (`*cls*.onnx|rten`: a `[N, 3, 48, 192]`
    /// strip batch in, `[N, 2]` probabilities of upright and turned out).
    pub fn with_angle_classifier(mut self, model: &Path) -> Result<Self> {
        self.cls = Some(load_model(model)?);
        Ok(self)
    }

    /// Whether an angle classifier is attached.
    pub fn has_angle_classifier(&self) -> bool {
        self.cls.is_some()
    }

    /// From loaded models. `dict[i]` is class `i + 1`.
    pub fn from_models(det: Model, rec: Model, dict: Vec<String>, name: String) -> Result<Self> {
        let rec_height = match rec.input_shape(0).as_deref() {
            Some([_, _, rten::Dimension::Fixed(h), _]) => *h,
            _ => 48,
        };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(Self {
            det,
            rec,
            cls: None,
            dict,
            rec_height,
            name,
            pool: Arc::new(ThreadPool::with_num_threads(threads)),
            rec_pools: (0..threads).map(|_| Arc::new(ThreadPool::with_num_threads(1))).collect(),
            params: PpOcrParams::default(),
        })
    }

    fn opts(&self) -> Option<RunOptions> {
        let mut o = RunOptions::default();
        o.thread_pool = Some(self.pool.clone());
        Some(o)
    }

    /// Text regions of `img`, as rotated rectangles in page pixels.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<RotatedRect>> {
        let (w, h) = img.dimensions();
        let p = &self.params;
        let short = w.min(h) as f32;
        let long = w.max(h) as f32;
        let mut ratio = if short < p.det_min_side as f32 { p.det_min_side as f32 / short } else { 1.0 };
        if long * ratio > p.det_max_side as f32 {
            ratio = p.det_max_side as f32 / long;
        }
        let round32 = |v: f32| ((v / 32.0).round() as u32 * 32).max(32);
        let (rw, rh) = (round32(w as f32 * ratio), round32(h as f32 * ratio));
        let resized = image::imageops::resize(img, rw, rh, image::imageops::FilterType::Triangle);
        let (rw, rh) = (rw as usize, rh as usize);
        let plane = rw * rh;
        let mut data = vec![0f32; 3 * plane];
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        for (i, px) in resized.pixels().enumerate() {
            // BGR order, as PaddleOCR reads images with OpenCV.
            for c in 0..3 {
                data[c * plane + i] = (px.0[2 - c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
        let input = NdTensor::from_data([1, 3, rh, rw], data);
        let out = self.det.run_one(input.view().into(), self.opts()).map_err(|e| Error::Internal(format!("text detection failed: {e}")))?;
        let prob: NdTensor<f32, 4> = out.try_into().map_err(|e| Error::Internal(format!("text detection output: {e:?}")))?;
        let [_, _, ph, pw] = prob.shape();
        let prob = prob.into_data();
        let (sx, sy) = (w as f32 / pw as f32, h as f32 / ph as f32);
        let mut rects = Vec::new();
        for rect in regions(&prob, pw, ph, p.thresh, None, 0) {
            if rect.width().min(rect.height()) < p.min_size {
                continue;
            }
            if mean_inside(&prob, pw, ph, &rect) < p.box_thresh {
                continue;
            }
            let (rw_, rh_) = (rect.width(), rect.height());
            let d = rw_ * rh_ * p.unclip_ratio / (2.0 * (rw_ + rh_));
            let grown = rect.expanded(2.0 * d, 2.0 * d);
            if grown.width().min(grown.height()) < p.min_size + 2.0 {
                continue;
            }
            // Back to page pixels (the scale may differ per axis: rebuild from the corners).
            let corners: Vec<PointF> = grown.corners().iter().map(|c| PointF::from_yx((c.y * sy).clamp(0.0, h as f32), (c.x * sx).clamp(0.0, w as f32))).collect();
            if let Some(r) = min_area_rect(&corners) {
                if r.width() >= 1.0 && r.height() >= 1.0 {
                    rects.push(r);
                }
            }
        }
        Ok(rects)
    }

    /// Read the text of each region (the order of `rects`); `None` for a region with no
    /// confident text.
    pub fn recognize_regions(&self, img: &RgbImage, rects: &[RotatedRect]) -> Result<Vec<Option<(String, f32)>>> {
        let (oriented, _) = self.orient(img, rects)?;
        self.read_oriented(img, &oriented)
    }

    /// Straighten each region ("up" towards the top of the page; tall boxes are vertical
    /// text), then turn every one when the angle classifier finds the page upside down.
    /// Also returns how many were turned (none or all).
    fn orient(&self, img: &RgbImage, rects: &[RotatedRect]) -> Result<(Vec<RotatedRect>, usize)> {
        let mut oriented: Vec<RotatedRect> = rects
            .iter()
            .map(|r| {
                let r = r.orient_towards(Vec2::from_yx(-1.0, 0.0));
                if r.height() >= 1.5 * r.width() {
                    r.orient_towards(Vec2::from_xy(1.0, 0.0))
                } else {
                    r
                }
            })
            .collect();
        let Some(cls) = self.cls.as_ref().filter(|_| self.params.angle_cls) else { return Ok((oriented, 0)) };
        const CLS_H: usize = 48;
        const CLS_W: usize = 192;
        // The classifier reads 4:1 strips. A longer line squeezed into one would be
        // distorted past recognition, so it is read as up to three 4:1 windows (both ends
        // and the middle) whose probabilities are averaged.
        let windows_of = |r: &RotatedRect| -> Vec<RotatedRect> {
            let ratio = r.width() / r.height().max(1.0);
            if ratio <= 4.0 {
                return vec![*r];
            }
            let k = (ratio / 4.0).ceil().min(3.0) as usize;
            let ww = 4.0 * r.height();
            let up = r.up_axis();
            let right = Vec2::from_xy(-up.y, up.x);
            let c = r.center();
            (0..k)
                .map(|j| {
                    let t = -(r.width() - ww) / 2.0 + j as f32 * (r.width() - ww) / (k - 1).max(1) as f32;
                    RotatedRect::new(PointF::from_yx(c.y + right.y * t, c.x + right.x * t), up, ww, r.height())
                })
                .collect()
        };
        // Longest lines first: they are classified most reliably, and the page's vote is
        // usually settled by them, so the rest are not classified at all.
        let mut by_length: Vec<usize> = (0..oriented.len()).collect();
        by_length.sort_by(|&a, &b| oriented[b].width().total_cmp(&oriented[a].width()));
        let confident = |p: f32, n: f32| n > 0.0 && p / n > self.params.cls_thresh;
        let plane = CLS_H * CLS_W;
        let (mut up_votes, mut down_votes) = (0usize, 0usize);
        let mut lines = by_length.into_iter().peekable();
        while lines.peek().is_some() {
            // One batch: whole lines' windows, at least `CLS_BATCH` of them when there are.
            const CLS_BATCH: usize = 16;
            let mut chunk: Vec<(usize, RotatedRect)> = Vec::new();
            while chunk.len() < CLS_BATCH {
                let Some(i) = lines.next() else { break };
                chunk.extend(windows_of(&oriented[i]).into_iter().map(|w| (i, w)));
            }
            let mut data = vec![0f32; chunk.len() * 3 * plane];
            for (bi, (_, r)) in chunk.iter().enumerate() {
                let cw = ((CLS_H as f32 * r.width() / r.height().max(1.0)).ceil() as usize).clamp(1, CLS_W);
                sample_strip(img, r, cw, CLS_H, CLS_W, &mut data[bi * 3 * plane..(bi + 1) * 3 * plane]);
            }
            let input = NdTensor::from_data([chunk.len(), 3, CLS_H, CLS_W], data);
            let out = cls.run_one(input.view().into(), self.opts()).map_err(|e| Error::Internal(format!("text angle classification failed: {e}")))?;
            let probs: NdTensor<f32, 2> = out.try_into().map_err(|e| Error::Internal(format!("text angle classification output: {e:?}")))?;
            let [n, classes] = probs.shape();
            if classes < 2 {
                return Err(Error::Internal(format!("the angle classifier gives {classes} classes, not 2")));
            }
            let probs = probs.into_data();
            // Per line of the batch: upright, turned, windows.
            let mut votes: Vec<(usize, [f32; 3])> = Vec::new();
            for (bi, (i, _)) in chunk.iter().enumerate().take(n) {
                if votes.last().is_none_or(|(j, _)| j != i) {
                    votes.push((*i, [0.0; 3]));
                }
                let v = &mut votes.last_mut().expect("pushed above").1;
                v[0] += probs[bi * classes];
                v[1] += probs[bi * classes + 1];
                v[2] += 1.0;
            }
            up_votes += votes.iter().filter(|(_, [u, _, n])| confident(*u, *n)).count();
            down_votes += votes.iter().filter(|(_, [_, d, n])| confident(*d, *n)).count();
            if settled(up_votes, down_votes) {
                break;
            }
        }
        // One decision per page: the lines classified with confidence vote, and all lines
        // follow the majority. (Short lines, digits above all, are often classified
        // wrongly on their own; a scan is turned as a whole.)
        if down_votes <= up_votes {
            return Ok((oriented, 0));
        }
        for r in oriented.iter_mut() {
            *r = r.orient_towards(-r.up_axis());
        }
        let turned = oriented.len();
        Ok((oriented, turned))
    }

    /// Read straightened regions.
    fn read_oriented(&self, img: &RgbImage, oriented: &[RotatedRect]) -> Result<Vec<Option<(String, f32)>>> {
        let hgt = self.rec_height;
        let ratio = |r: &RotatedRect| r.width() / r.height().max(1.0);
        let mut order: Vec<usize> = (0..oriented.len()).collect();
        order.sort_by(|&a, &b| ratio(&oriented[a]).total_cmp(&ratio(&oriented[b])));
        let mut out: Vec<Option<(String, f32)>> = vec![None; oriented.len()];
        // Widest batches first, so the last to finish are the cheapest and neither thread
        // waits long for the other at the end.
        let batches: Vec<&[usize]> = order.chunks(self.params.rec_batch.max(1)).rev().collect();
        // Batches run side by side, one thread each (small batches keep one core busier
        // than one batch split across cores).
        let next = std::sync::atomic::AtomicUsize::new(0);
        let run_batch = |batch: &[usize], pool: &Arc<ThreadPool>| -> Result<Vec<(usize, Option<(String, f32)>)>> {
            let max_ratio = batch.iter().map(|&i| ratio(&oriented[i])).fold(1.0, f32::max);
            let bw = ((hgt as f32 * max_ratio).ceil() as usize).clamp(hgt, hgt * 64);
            let plane = hgt * bw;
            let mut data = vec![0f32; batch.len() * 3 * plane];
            for (bi, &i) in batch.iter().enumerate() {
                let r = &oriented[i];
                let cw = ((hgt as f32 * ratio(r)).ceil() as usize).clamp(1, bw);
                sample_strip(img, r, cw, hgt, bw, &mut data[bi * 3 * plane..(bi + 1) * 3 * plane]);
            }
            let input = NdTensor::from_data([batch.len(), 3, hgt, bw], data);
            let mut opts = RunOptions::default();
            opts.thread_pool = Some(pool.clone());
            let res = self.rec.run_one(input.view().into(), Some(opts)).map_err(|e| Error::Internal(format!("text recognition failed: {e}")))?;
            let probs: NdTensor<f32, 3> = res.try_into().map_err(|e| Error::Internal(format!("text recognition output: {e:?}")))?;
            let [n, steps, classes] = probs.shape();
            let probs = probs.into_data();
            Ok(batch
                .iter()
                .enumerate()
                .take(n)
                .map(|(bi, &i)| {
                    let (text, conf) = self.ctc_decode(&probs[bi * steps * classes..(bi + 1) * steps * classes], steps, classes);
                    let text = text.trim().to_string();
                    (i, (!text.is_empty() && conf >= self.params.text_score).then_some((text, conf)))
                })
                .collect())
        };
        let results: Vec<Result<Vec<(usize, Option<(String, f32)>)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .rec_pools
                .iter()
                .take(batches.len().max(1))
                .map(|pool| {
                    let (next, batches, run_batch) = (&next, &batches, &run_batch);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = batches.get(b) else { break };
                            got.extend(run_batch(batch, pool)?);
                        }
                        Ok(got)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::internal("text recognition worker panicked")))).collect()
        });
        for r in results {
            for (i, t) in r? {
                out[i] = t;
            }
        }
        Ok(out)
    }

    fn ctc_decode(&self, probs: &[f32], steps: usize, classes: usize) -> (String, f32) {
        let mut text = String::new();
        let (mut sum, mut n) = (0f32, 0usize);
        let mut prev = usize::MAX;
        for t in 0..steps {
            let row = &probs[t * classes..(t + 1) * classes];
            let (idx, p) = row.iter().enumerate().fold((0, f32::MIN), |(bi, bp), (i, &v)| if v > bp { (i, v) } else { (bi, bp) });
            if idx != 0 && idx != prev {
                match self.dict.get(idx - 1) {
                    Some(c) => text.push_str(c),
                    None => text.push(' '),
                }
                sum += p;
                n += 1;
            }
            prev = idx;
        }
        (text, if n == 0 { 0.0 } else { sum / n as f32 })
    }
}

/// Whether a page's orientation vote is settled by the confident lines counted so far:
/// at least six for one side and no more than a quarter as many for the other.
fn settled(up: usize, down: usize) -> bool {
    let (lead, other) = (up.max(down), up.min(down));
    lead >= 6 && 4 * other <= lead
}

/// Text regions of a probability map: each connected region above `thresh` (inside
/// `within`, a polygon in map pixels, when given), as its minimum-area rectangle. A
/// region that fills less than half its rectangle is two shapes touching (a line of
/// text and a diagonal watermark, say): it is split by looking again at a higher
/// threshold after eroding it, twice at most.
fn regions(prob: &[f32], w: usize, h: usize, thresh: f32, within: Option<&[PointF]>, depth: usize) -> Vec<RotatedRect> {
    let mut mask = vec![false; w * h];
    match within {
        None => {
            for (m, p) in mask.iter_mut().zip(prob) {
                *m = *p > thresh;
            }
        }
        Some(poly) => {
            let pts: Vec<rten_imageproc::Point> = poly.iter().map(|p| rten_imageproc::Point::from_yx(p.y.round() as i32, p.x.round() as i32)).collect();
            for px in rten_imageproc::Polygon::new(&pts[..]).fill_iter() {
                let (x, y) = (px.x, px.y);
                if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                    let i = y as usize * w + x as usize;
                    mask[i] = prob[i] > thresh;
                }
            }
        }
    }
    if depth > 0 {
        // Erode by `2 * depth` pixels: thin necks between touching shapes break.
        for _ in 0..2 * depth {
            let prev = mask.clone();
            for y in 1..h.saturating_sub(1) {
                for x in 1..w.saturating_sub(1) {
                    let i = y * w + x;
                    if prev[i] && !(prev[i - 1] && prev[i + 1] && prev[i - w] && prev[i + w]) {
                        mask[i] = false;
                    }
                }
            }
        }
    }
    let mask = NdTensor::from_data([h, w], mask);
    let mut out = Vec::new();
    for poly in find_contours(mask.view(), RetrievalMode::External).iter() {
        if poly.len() < 4 {
            continue;
        }
        let pts: Vec<PointF> = poly.iter().map(|p| p.to_f32()).collect();
        // The hull inside min_area_rect goes wrong on long runs of collinear contour
        // points: simplify first (as ocrs does).
        let simple = simplify_polygon(&pts, 1.0);
        let Some(mut rect) = min_area_rect(&simple) else { continue };
        let area = shoelace(&pts);
        if depth < 2 && rect.area() > 200.0 && area < 0.5 * rect.area() {
            let parts = regions(prob, w, h, thresh + 0.1 * depth as f32, Some(&simple), depth + 1);
            if !parts.is_empty() {
                out.extend(parts);
                continue;
            }
        }
        if depth > 0 {
            // Give back what the erosion took.
            let e = 4.0 * depth as f32;
            rect = rect.expanded(e, e);
        }
        out.push(rect);
    }
    out
}

/// The area of a polygon.
fn shoelace(pts: &[PointF]) -> f32 {
    let n = pts.len();
    (0..n).map(|i| pts[i].x * pts[(i + 1) % n].y - pts[(i + 1) % n].x * pts[i].y).sum::<f32>().abs() / 2.0
}

/// Mean of `prob` (a `w` x `h` map) over the pixels inside `rect`.
pub(crate) fn mean_inside(prob: &[f32], w: usize, h: usize, rect: &RotatedRect) -> f32 {
    use rten_imageproc::BoundingRect;
    let b = rect.bounding_rect();
    let (x0, x1) = ((b.left().floor().max(0.0)) as usize, (b.right().ceil() as usize).min(w.saturating_sub(1)));
    let (y0, y1) = ((b.top().floor().max(0.0)) as usize, (b.bottom().ceil() as usize).min(h.saturating_sub(1)));
    let (mut sum, mut n) = (0f32, 0usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if rect.contains(PointF::from_yx(y as f32, x as f32)) {
                sum += prob[y * w + x];
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f32
    }
}

/// Sample `rect` of `img` into a `cw` x `hgt` strip at the left of a `bw`-wide CHW
/// buffer (normalised to -1..1, BGR; the rest stays 0).
fn sample_strip(img: &RgbImage, rect: &RotatedRect, cw: usize, hgt: usize, bw: usize, out: &mut [f32]) {
    let up = rect.up_axis();
    let right = Vec2::from_xy(-up.y, up.x);
    let down = Vec2::from_xy(-up.x, -up.y);
    let c = rect.center();
    let (rw, rh) = (rect.width(), rect.height());
    // Average several samples per output pixel when shrinking a lot.
    let ss = ((rh / hgt as f32).ceil() as usize).clamp(1, 4);
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let px = |x: i64, y: i64| -> [f32; 3] {
        let (x, y) = (x.clamp(0, iw - 1), y.clamp(0, ih - 1));
        let o = ((y * iw + x) * 3) as usize;
        [raw[o] as f32, raw[o + 1] as f32, raw[o + 2] as f32]
    };
    let plane = hgt * bw;
    for v in 0..hgt {
        for u in 0..cw {
            let mut acc = [0f32; 3];
            for sy in 0..ss {
                for sx in 0..ss {
                    let fu = (u as f32 + (sx as f32 + 0.5) / ss as f32) / cw as f32 - 0.5;
                    let fv = (v as f32 + (sy as f32 + 0.5) / ss as f32) / hgt as f32 - 0.5;
                    let x = c.x + right.x * fu * rw + down.x * fv * rh - 0.5;
                    let y = c.y + right.y * fu * rw + down.y * fv * rh - 0.5;
                    let (x0, y0) = (x.floor(), y.floor());
                    let (ax, ay) = (x - x0, y - y0);
                    let (x0, y0) = (x0 as i64, y0 as i64);
                    let (p00, p10, p01, p11) = (px(x0, y0), px(x0 + 1, y0), px(x0, y0 + 1), px(x0 + 1, y0 + 1));
                    for k in 0..3 {
                        acc[k] += (p00[k] * (1.0 - ax) + p10[k] * ax) * (1.0 - ay) + (p01[k] * (1.0 - ax) + p11[k] * ax) * ay;
                    }
                }
            }
            let n = (ss * ss) as f32;
            for k in 0..3 {
                // BGR channel order.
                out[k * plane + v * bw + u] = (acc[2 - k] / n / 255.0 - 0.5) / 0.5;
            }
        }
    }
}

impl OcrEngine for PpOcr {
    fn name(&self) -> &str {
        &self.name
    }

    fn reads_language(&self, code: &str) -> bool {
        super::LATIN_LANGUAGES.contains(&code) || matches!(code, "zh" | "ja" | "el")
    }

    fn scripts(&self) -> &str {
        "Latin, Chinese, Japanese and Greek"
    }

    fn recognize(&self, img: &RgbImage) -> Result<Vec<OcrLine>> {
        let rects = self.detect(img)?;
        let (oriented, turned) = self.orient(img, &rects)?;
        let texts = self.read_oriented(img, &oriented)?;
        let mut lines: Vec<OcrLine> = rects
            .iter()
            .zip(texts)
            .filter_map(|(r, t)| {
                let (text, confidence) = t?;
                Some(line_from_rect(r, text, confidence))
            })
            .collect();
        sort_reading_order(&mut lines);
        // An upside-down page: its reading order is the upright order reversed.
        if 2 * turned > rects.len() {
            lines.reverse();
        }
        Ok(lines)
    }
}

fn load_model(p: &Path) -> Result<Model> {
    let mut o = rten::ModelOptions::with_all_ops();
    o.prepack_weights(true);
    o.load_file(p).map_err(|e| Error::NotAvailable {
        what: format!("OCR model {}", p.file_name().and_then(|n| n.to_str()).unwrap_or("?")),
        reason: format!("could not be loaded: {e}"),
    })
}

/// An [`OcrLine`] for a region: its bounding box and its corners clockwise from the top-left.
pub(crate) fn line_from_rect(r: &RotatedRect, text: String, confidence: f32) -> OcrLine {
    use rten_imageproc::BoundingRect;
    let b = r.bounding_rect();
    let mut corners: Vec<[f32; 2]> = r.corners().iter().map(|c| [c.x, c.y]).collect();
    // Clockwise from the corner nearest the top-left of the page.
    let start = (0..4).min_by(|&a, &b| (corners[a][0] + corners[a][1]).total_cmp(&(corners[b][0] + corners[b][1]))).unwrap_or(0);
    corners.rotate_left(start);
    let signed: f32 = (0..4).map(|i| corners[i][0] * corners[(i + 1) % 4][1] - corners[(i + 1) % 4][0] * corners[i][1]).sum();
    if signed < 0.0 {
        // Counter-clockwise in image coordinates (y down): reverse, keeping the start.
        corners[1..].reverse();
    }
    OcrLine { text, confidence, bbox: [b.left(), b.top(), b.right(), b.bottom()], polygon: [corners[0], corners[1], corners[2], corners[3]] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_vote_is_settled_by_a_clear_majority_of_confident_lines() {
        assert!(!settled(0, 0));
        assert!(!settled(5, 0), "too few lines to stop early");
        assert!(settled(6, 0) && settled(0, 6));
        assert!(settled(8, 2) && settled(2, 8));
        assert!(!settled(8, 3), "a quarter of the lines dissent");
        assert!(!settled(20, 6));
        assert!(settled(24, 6));
    }

    #[test]
    fn strips_are_sampled_upright_from_rotated_boxes() {
        // A 40x10 dark bar rotated by 90 degrees reads as a dark strip.
        let mut img = RgbImage::from_pixel(100, 100, image::Rgb([255; 3]));
        for y in 30..70 {
            for x in 45..55 {
                img.put_pixel(x, y, image::Rgb([0; 3]));
            }
        }
        let rect = RotatedRect::new(PointF::from_yx(50.0, 50.0), Vec2::from_xy(1.0, 0.0), 40.0, 10.0);
        let (hgt, bw) = (8, 40);
        let mut out = vec![0f32; 3 * hgt * bw];
        sample_strip(&img, &rect, 32, hgt, bw, &mut out);
        // Inside the strip: dark (-1); the padding past cw stays 0.
        assert!(out[3 * bw + 10] < -0.9, "{}", out[3 * bw + 10]);
        assert_eq!(out[3 * bw + 35], 0.0);
    }

    #[test]
    fn line_polygons_run_clockwise_from_the_top_left() {
        let r = RotatedRect::new(PointF::from_yx(20.0, 50.0), Vec2::from_yx(-1.0, 0.0), 60.0, 10.0);
        let l = line_from_rect(&r, "x".into(), 0.9);
        assert_eq!(l.bbox, [20.0, 15.0, 80.0, 25.0]);
        assert_eq!(l.polygon, [[20.0, 15.0], [80.0, 15.0], [80.0, 25.0], [20.0, 25.0]]);
    }
}
