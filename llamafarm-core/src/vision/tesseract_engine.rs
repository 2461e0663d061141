//! Tesseract 5 as an OCR engine (the `ocr-tesseract` feature): the system's libtesseract
//! through the `tesseract` crate's safe bindings, with the language data installed beside
//! it (Debian: `tesseract-ocr-eng`, `tesseract-ocr-fra`, ...).
//!
//! One Tesseract instance reads one page at a time, so instances are pooled per language
//! set and reused (initialising one loads its language models, tens of milliseconds).
//! Page segmentation is Tesseract's automatic mode; lines, their boxes and their
//! confidences (the mean of the words' confidences) come from its TSV output.

use super::{OcrEngine, OcrLine};
use crate::error::{Error, Result};
use image::RgbImage;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use tesseract::plumbing::TessBaseApi;

/// Instances kept per language set once their pages are read.
const POOL_PER_LANGUAGES: usize = 4;

struct Shared {
    /// Where the `.traineddata` files are; `None`: Tesseract's own default (its build's
    /// data directory, or `TESSDATA_PREFIX`).
    datapath: Option<CString>,
    /// Idle instances by Tesseract language string (`eng`, `eng+fra`).
    pools: Mutex<HashMap<String, Vec<TessBaseApi>>>,
    /// Whether a Tesseract language's data could be loaded.
    installed: Mutex<HashMap<String, bool>>,
}

/// A Tesseract engine reading one set of languages.
pub struct Tesseract {
    shared: Arc<Shared>,
    /// Tesseract's language string.
    languages: String,
}

impl std::fmt::Debug for Tesseract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tesseract").field("languages", &self.languages).finish()
    }
}

/// Tesseract's name for an ISO 639-1 language code.
pub fn tesseract_language(code: &str) -> Option<&'static str> {
    Some(match code {
        "en" => "eng",
        "fr" => "fra",
        "de" => "deu",
        "es" => "spa",
        "it" => "ita",
        "pt" => "por",
        "nl" => "nld",
        "sv" => "swe",
        "da" => "dan",
        "no" | "nb" | "nn" => "nor",
        "fi" => "fin",
        "is" => "isl",
        "pl" => "pol",
        "cs" => "ces",
        "sk" => "slk",
        "sl" => "slv",
        "hr" => "hrv",
        "bs" => "bos",
        "ro" => "ron",
        "hu" => "hun",
        "tr" => "tur",
        "et" => "est",
        "lv" => "lav",
        "lt" => "lit",
        "id" => "ind",
        "ms" => "msa",
        "tl" => "tgl",
        "vi" => "vie",
        "ca" => "cat",
        "eu" => "eus",
        "gl" => "glg",
        "ga" => "gle",
        "cy" => "cym",
        "mt" => "mlt",
        "af" => "afr",
        "sw" => "swa",
        "la" => "lat",
        "sq" => "sqi",
        "az" => "aze",
        "uz" => "uzb",
        "eo" => "epo",
        "lb" => "ltz",
        "oc" => "oci",
        "zh" => "chi_sim",
        "ja" => "jpn",
        "ko" => "kor",
        "el" => "ell",
        "ru" => "rus",
        "uk" => "ukr",
        "bg" => "bul",
        "sr" => "srp",
        "mk" => "mkd",
        "be" => "bel",
        "kk" => "kaz",
        "mn" => "mon",
        "ar" => "ara",
        "fa" => "fas",
        "ur" => "urd",
        "he" => "heb",
        "yi" => "yid",
        "hi" => "hin",
        "mr" => "mar",
        "ne" => "nep",
        "bn" => "ben",
        "ta" => "tam",
        "te" => "tel",
        "kn" => "kan",
        "ml" => "mal",
        "gu" => "guj",
        "pa" => "pan",
        "th" => "tha",
        "lo" => "lao",
        "km" => "khm",
        "my" => "mya",
        "ka" => "kat",
        "hy" => "hye",
        "am" => "amh",
        "si" => "sin",
        _ => return None,
    })
}

impl Shared {
    /// A ready instance for `languages`: an idle one, or a new one.
    fn take(&self, languages: &str) -> Result<TessBaseApi> {
        if let Some(api) = self.pools.lock().unwrap_or_else(|p| p.into_inner()).get_mut(languages).and_then(Vec::pop) {
            return Ok(api);
        }
        let mut api = TessBaseApi::create();
        let lang = CString::new(languages).map_err(|_| Error::Internal("language string with a NUL".into()))?;
        api.init_2(self.datapath.as_deref(), Some(&lang)).map_err(|_| {
            Error::unavailable(format!("Tesseract language data '{languages}'"), format!("is not installed (Debian: apt install {})", packages(languages)))
        })?;
        // Tesseract's diagnostics ("Image too small to scale!!" for a sliver of a line)
        // go to stderr unless sent elsewhere; a server's log is not the place for them.
        let _ = api.set_variable(c"debug_file", c"/dev/null");
        Ok(api)
    }

    fn put(&self, languages: &str, api: TessBaseApi) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let pool = pools.entry(languages.to_string()).or_default();
        if pool.len() < POOL_PER_LANGUAGES {
            pool.push(api);
        }
    }

    /// Whether Tesseract can load `lang` (probed once, the instance kept).
    fn has(&self, lang: &str) -> bool {
        if let Some(&known) = self.installed.lock().unwrap_or_else(|p| p.into_inner()).get(lang) {
            return known;
        }
        let ok = match self.take(lang) {
            Ok(api) => {
                self.put(lang, api);
                true
            }
            Err(_) => false,
        };
        self.installed.lock().unwrap_or_else(|p| p.into_inner()).insert(lang.to_string(), ok);
        ok
    }
}

/// Debian's packages for a Tesseract language string.
fn packages(languages: &str) -> String {
    languages.split('+').map(|l| format!("tesseract-ocr-{}", l.replace('_', "-"))).collect::<Vec<_>>().join(" ")
}

impl Tesseract {
    /// Tesseract reading English, with its data looked up in `datapath` (or Tesseract's
    /// default). A 503 naming the package when the English data is not installed.
    pub fn load(datapath: Option<&std::path::Path>) -> Result<Self> {
        let datapath = match datapath {
            Some(p) => Some(CString::new(p.to_string_lossy().as_bytes()).map_err(|_| Error::Internal("tessdata path with a NUL".into()))?),
            None => None,
        };
        let shared = Arc::new(Shared { datapath, pools: Mutex::new(HashMap::new()), installed: Mutex::new(HashMap::new()) });
        let api = shared.take("eng")?;
        shared.put("eng", api);
        shared.installed.lock().unwrap_or_else(|p| p.into_inner()).insert("eng".into(), true);
        Ok(Self { shared, languages: "eng".into() })
    }
}

/// Lines from Tesseract's TSV output: rows of level 5 (words) grouped by block,
/// paragraph and line; a line's box is its level-4 row, its confidence the mean of its
/// words' (Tesseract's 0..100 scaled to 0..1).
pub fn lines_from_tsv(tsv: &str) -> Vec<OcrLine> {
    struct Acc {
        bbox: [f32; 4],
        words: Vec<String>,
        conf: f32,
    }
    let mut order: Vec<(u32, u32, u32)> = Vec::new();
    let mut lines: HashMap<(u32, u32, u32), Acc> = HashMap::new();
    for row in tsv.lines() {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 {
            continue;
        }
        let num = |i: usize| f[i].trim().parse::<i64>().ok();
        let (Some(level), Some(block), Some(par), Some(line)) = (num(0), num(2), num(3), num(4)) else { continue };
        let (Some(left), Some(top), Some(width), Some(height)) = (num(6), num(7), num(8), num(9)) else { continue };
        let key = (block as u32, par as u32, line as u32);
        let bbox = [left as f32, top as f32, (left + width) as f32, (top + height) as f32];
        match level {
            4 => {
                if !lines.contains_key(&key) {
                    order.push(key);
                }
                lines.entry(key).or_insert(Acc { bbox, words: Vec::new(), conf: 0.0 }).bbox = bbox;
            }
            5 => {
                let text = f[11..].join("\t");
                let text = text.trim();
                let conf = f[10].trim().parse::<f32>().unwrap_or(-1.0);
                if text.is_empty() || conf < 0.0 {
                    continue;
                }
                if !lines.contains_key(&key) {
                    order.push(key);
                }
                let acc = lines.entry(key).or_insert(Acc { bbox, words: Vec::new(), conf: 0.0 });
                acc.words.push(text.to_string());
                acc.conf += conf;
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|k| {
            let a = lines.remove(&k)?;
            if a.words.is_empty() {
                return None;
            }
            let [l, t, r, b] = a.bbox;
            Some(OcrLine {
                confidence: (a.conf / a.words.len() as f32 / 100.0).clamp(0.0, 1.0),
                text: a.words.join(" "),
                bbox: a.bbox,
                polygon: [[l, t], [r, t], [r, b], [l, b]],
            })
        })
        .collect()
}

impl OcrEngine for Tesseract {
    fn name(&self) -> &str {
        "tesseract"
    }

    fn reads_language(&self, code: &str) -> bool {
        tesseract_language(code).is_some_and(|l| self.shared.has(l))
    }

    fn scripts(&self) -> &str {
        "the languages whose Tesseract data is installed"
    }

    fn why_not(&self, code: &str) -> String {
        match tesseract_language(code) {
            Some(l) => format!("its language data '{l}' is not installed: apt install {}", packages(l)),
            None => "Tesseract has no model for it".into(),
        }
    }

    fn with_languages(&self, languages: &[String]) -> Option<Arc<dyn OcrEngine>> {
        let mut names: Vec<&str> = Vec::new();
        for l in languages.iter().filter_map(|c| tesseract_language(c)) {
            if !names.contains(&l) {
                names.push(l);
            }
        }
        if names.is_empty() || names.join("+") == self.languages {
            return None;
        }
        Some(Arc::new(Tesseract { shared: self.shared.clone(), languages: names.join("+") }))
    }

    fn recognize(&self, img: &RgbImage) -> Result<Vec<OcrLine>> {
        let (w, h) = img.dimensions();
        let (Ok(wi), Ok(hi), Ok(stride)) = (i32::try_from(w), i32::try_from(h), i32::try_from(u64::from(w) * 3)) else {
            return Err(Error::InvalidField { field: "file".into(), reason: format!("a {w}x{h} page is too large for Tesseract") });
        };
        let mut api = self.shared.take(&self.languages)?;
        let result = (|| {
            api.set_image(img.as_raw(), wi, hi, 3, stride).map_err(|e| Error::Internal(format!("Tesseract refused the page: {e}")))?;
            api.recognize().map_err(|_| Error::Internal("Tesseract could not recognise the page".into()))?;
            let tsv = api.get_tsv_text(0).map_err(|_| Error::Internal("Tesseract returned no text".into()))?;
            Ok(lines_from_tsv(&String::from_utf8_lossy(tsv.as_ref().to_bytes())))
        })();
        self.shared.put(&self.languages, api);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_rows_become_lines_with_boxes_and_confidences() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t600\t260\t-1\t\n\
                   4\t1\t1\t1\t1\t0\t10\t20\t200\t30\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t20\t80\t30\t96.5\tTotal\n\
                   5\t1\t1\t1\t1\t2\t120\t20\t90\t30\t90.5\t$39.59\n\
                   4\t1\t1\t1\t2\t0\t10\t60\t100\t30\t-1\t\n\
                   5\t1\t1\t1\t2\t1\t10\t60\t100\t30\t95\t \n\
                   4\t1\t2\t1\t1\t0\t300\t20\t120\t28\t-1\t\n\
                   5\t1\t2\t1\t1\t1\t300\t20\t120\t28\t80\tDebit\n";
        let lines = lines_from_tsv(tsv);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].text, "Total $39.59");
        assert_eq!(lines[0].bbox, [10.0, 20.0, 210.0, 50.0]);
        assert!((lines[0].confidence - 0.935).abs() < 1e-5);
        assert_eq!(lines[1].text, "Debit");
        assert_eq!(lines[1].polygon, [[300.0, 20.0], [420.0, 20.0], [420.0, 48.0], [300.0, 48.0]]);
    }

    #[test]
    fn languages_map_to_tesseract_names_and_packages() {
        assert_eq!(tesseract_language("zh"), Some("chi_sim"));
        assert_eq!(tesseract_language("xx"), None);
        assert_eq!(packages("eng+chi_sim"), "tesseract-ocr-eng tesseract-ocr-chi-sim");
    }
}
