//! Metadata extractors, run per chunk: statistics, keywords (YAKE-style), patterns,
//! headings, dates, rule-based entities, and the Universal extractor (keywords,
//! summary sentences, language detection).

use crate::config::ExtractorConfig;
use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

const STOP: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below",
    "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
    "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no",
    "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such",
    "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very",
    "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "also", "may", "must",
    "shall", "upon", "within", "without", "one", "two",
];

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("static regex"))
}

fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\'')).filter(|w| !w.is_empty()).collect()
}

/// YAKE-style keywords: candidates are 1-3 word phrases without stop words,
/// scored by frequency, early position, casing and spread; best first.
pub fn keywords(text: &str, n: usize) -> Vec<String> {
    let ws = words(text);
    let total = ws.len().max(1) as f64;
    let mut stats: HashMap<String, (f64, usize, usize)> = HashMap::new(); // (tf, first position, capitalised count)
    for (i, w) in ws.iter().enumerate() {
        let lw = w.to_lowercase();
        if lw.len() < 3 || STOP.contains(&lw.as_str()) || lw.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let e = stats.entry(lw).or_insert((0.0, i, 0));
        e.0 += 1.0;
        if w.chars().next().is_some_and(|c| c.is_uppercase()) && i > 0 {
            e.2 += 1;
        }
    }
    let mut scored: Vec<(String, f64)> = Vec::new();
    for (w, (tf, first, caps)) in &stats {
        let pos = 1.0 + (1.0 + *first as f64 / total).ln();
        let case = 1.0 + *caps as f64 / tf;
        // Lower YAKE score is better; invert to rank.
        let yake = pos / (case * (tf / (1.0 + (tf / total * 50.0))).max(1e-6));
        scored.push((w.clone(), yake));
    }
    // Bigrams of consecutive non-stop words.
    for pair in ws.windows(2) {
        let (a, b) = (pair[0].to_lowercase(), pair[1].to_lowercase());
        if let (Some(sa), Some(sb)) = (stats.get(&a), stats.get(&b)) {
            if sa.0 >= 2.0 && sb.0 >= 2.0 {
                let phrase = format!("{a} {b}");
                if !scored.iter().any(|(p, _)| p == &phrase) {
                    let s = scored.iter().filter(|(p, _)| p == &a || p == &b).map(|x| x.1).fold(f64::MAX, f64::min) * 0.9;
                    scored.push((phrase, s));
                }
            }
        }
    }
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    scored.into_iter().take(n).map(|(w, _)| w).collect()
}

/// The `n` sentences that share the most keywords with the text, in text order.
pub fn summary(text: &str, n: usize) -> String {
    let sents = super::chunk::sentences(text);
    if sents.len() <= n {
        return sents.join(" ");
    }
    let kws: Vec<String> = keywords(text, 15);
    let mut scored: Vec<(usize, f64)> = sents
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let l = s.to_lowercase();
            let hits = kws.iter().filter(|k| l.contains(k.as_str())).count() as f64;
            (i, hits / (1.0 + (words(s).len() as f64).ln()) + if i == 0 { 0.5 } else { 0.0 })
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut keep: Vec<usize> = scored.into_iter().take(n).map(|x| x.0).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| sents[i].clone()).collect::<Vec<_>>().join(" ")
}

/// ISO 639-3 code of the text's language (whatlang), with its confidence.
pub fn language(text: &str) -> Option<(String, f64)> {
    whatlang::detect(text).filter(|i| i.is_reliable() || text.len() > 200).map(|i| (i.lang().code().to_string(), i.confidence()))
}

fn statistics(text: &str) -> Map<String, Value> {
    let ws = words(text);
    let sents = super::chunk::sentences(text).len().max(1);
    let syllables: usize = ws.iter().map(|w| syllable_count(w)).sum();
    let wc = ws.len().max(1) as f64;
    // Flesch reading ease.
    let flesch = 206.835 - 1.015 * (wc / sents as f64) - 84.6 * (syllables as f64 / wc);
    let mut m = Map::new();
    m.insert("word_count".into(), json!(ws.len()));
    m.insert("sentence_count".into(), json!(sents));
    m.insert("character_count".into(), json!(text.chars().count()));
    m.insert("avg_word_length".into(), json!((ws.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / wc * 100.0).round() / 100.0));
    m.insert("reading_time_minutes".into(), json!((wc / 200.0 * 100.0).round() / 100.0));
    m.insert("flesch_reading_ease".into(), json!((flesch * 10.0).round() / 10.0));
    m
}

fn syllable_count(w: &str) -> usize {
    let w = w.to_lowercase();
    let mut n = 0;
    let mut prev_vowel = false;
    for c in w.chars() {
        let v = "aeiouy".contains(c);
        if v && !prev_vowel {
            n += 1;
        }
        prev_vowel = v;
    }
    if w.ends_with('e') && n > 1 {
        n -= 1;
    }
    n.max(1)
}

fn patterns(text: &str, cfg: &Map<String, Value>) -> Map<String, Value> {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    static URL: OnceLock<Regex> = OnceLock::new();
    static PHONE: OnceLock<Regex> = OnceLock::new();
    static IP: OnceLock<Regex> = OnceLock::new();
    let builtin: [(&str, &Regex); 4] = [
        ("email", re(&EMAIL, r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
        ("url", re(&URL, r#"https?://[^\s<>"')\]]+"#)),
        ("phone", re(&PHONE, r"(?:\+?\d{1,3}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b")),
        ("ip_address", re(&IP, r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    ];
    let wanted: Option<Vec<String>> = cfg
        .get("predefined_patterns")
        .or_else(|| cfg.get("patterns"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect());
    let mut m = Map::new();
    for (name, r) in builtin {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|x| x == name)) {
            continue;
        }
        let found: Vec<String> = r.find_iter(text).map(|x| x.as_str().trim_end_matches(['.', ',']).to_string()).take(50).collect();
        if !found.is_empty() {
            m.insert(format!("{name}s"), json!(dedup(found)));
        }
    }
    for p in cfg.get("custom_patterns").and_then(|v| v.as_array()).into_iter().flatten() {
        let (Some(name), Some(pat)) = (p["name"].as_str(), p["pattern"].as_str()) else { continue };
        if let Ok(r) = Regex::new(pat) {
            let found: Vec<String> = r.find_iter(text).map(|x| x.as_str().to_string()).take(50).collect();
            if !found.is_empty() {
                m.insert(name.to_string(), json!(dedup(found)));
            }
        }
    }
    m
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

fn dates(text: &str) -> Vec<String> {
    static D: OnceLock<Regex> = OnceLock::new();
    let r = re(
        &D,
        r"(?i)\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4}|\d{1,2} (?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]* \d{4})\b",
    );
    dedup(r.find_iter(text).map(|m| m.as_str().to_string()).take(50).collect())
}

/// Rule-based entities: capitalised multi-word names, organisations by suffix,
/// money, percentages (no NER model is available offline).
fn entities(text: &str) -> Map<String, Value> {
    static NAME: OnceLock<Regex> = OnceLock::new();
    static MONEY: OnceLock<Regex> = OnceLock::new();
    static PCT: OnceLock<Regex> = OnceLock::new();
    let name = re(&NAME, r"\b([A-Z][a-z]+(?:\s+(?:[A-Z][a-z]+|[A-Z]\.|of|de|van|von))*\s+[A-Z][a-zA-Z]+)\b");
    let mut orgs = Vec::new();
    let mut people = Vec::new();
    for m in name.find_iter(text).take(100) {
        let s = m.as_str();
        let last = s.rsplit(' ').next().unwrap_or("");
        if [
            "Inc",
            "Corp",
            "Corporation",
            "Ltd",
            "LLC",
            "Company",
            "University",
            "Institute",
            "Agency",
            "Administration",
            "Association",
            "Bank",
            "Group",
            "Foundation",
            "Department",
        ]
        .contains(&last)
        {
            orgs.push(s.to_string());
        } else if s.split(' ').count() <= 3 && !STOP.contains(&s.split(' ').next().unwrap_or("").to_lowercase().as_str()) {
            people.push(s.to_string());
        }
    }
    let money: Vec<String> =
        re(&MONEY, r"[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|[MBK]))?").find_iter(text).map(|m| m.as_str().to_string()).take(50).collect();
    let pct: Vec<String> = re(&PCT, r"\b\d+(?:\.\d+)?\s?%").find_iter(text).map(|m| m.as_str().to_string()).take(50).collect();
    let mut m = Map::new();
    for (k, v) in [("PERSON", people), ("ORG", orgs), ("MONEY", money), ("PERCENT", pct)] {
        if !v.is_empty() {
            m.insert(k.into(), json!(dedup(v)));
        }
    }
    m
}

fn headings(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('#') && l.trim_start_matches('#').starts_with(' '))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .take(20)
        .collect()
}

fn glob_match(pat: &str, name: &str) -> bool {
    // `*` and `?` wildcards, case-insensitive.
    let p: Vec<char> = pat.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    fn rec(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some('?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(&p, &n)
}

/// Whether `name` matches a glob pattern (`*.pdf`, `report_*.csv`).
pub fn glob(pat: &str, name: &str) -> bool {
    glob_match(pat, name)
}

/// Run the configured extractors over a chunk; results go into `meta`.
/// Unknown extractor types are reported once in `extractor_warnings`.
pub fn run(extractors: &[ExtractorConfig], file_name: &str, text: &str, meta: &mut Map<String, Value>) {
    for e in extractors {
        if let Some(pats) = &e.file_include_patterns {
            if !pats.is_empty() && !pats.iter().any(|p| glob(p, file_name)) {
                continue;
            }
        }
        let empty = Map::new();
        let cfg = e.config.as_ref().unwrap_or(&empty);
        let n = |k: &str, d: usize| cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as usize).unwrap_or(d);
        let b = |k: &str, d: bool| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(d);
        match e.kind.as_str() {
            "ContentStatisticsExtractor" | "StatisticsExtractor" => {
                meta.insert("statistics".into(), Value::Object(statistics(text)));
            }
            "KeywordExtractor" | "YAKEExtractor" | "RAKEExtractor" | "TFIDFExtractor" => {
                let k = n("max_keywords", n("keyword_count", n("top_k", 10)));
                meta.insert("keywords".into(), json!(keywords(text, k)));
            }
            "PatternExtractor" | "LinkExtractor" | "PathExtractor" => {
                meta.extend(patterns(text, cfg));
            }
            "HeadingExtractor" => {
                let h = headings(text);
                if !h.is_empty() {
                    meta.insert("headings".into(), json!(h));
                }
            }
            "DateTimeExtractor" => {
                let d = dates(text);
                if !d.is_empty() {
                    meta.insert("dates".into(), json!(d));
                }
            }
            "EntityExtractor" => {
                meta.insert("entities".into(), Value::Object(entities(text)));
            }
            "SummaryExtractor" => {
                meta.insert("summary".into(), json!(summary(text, n("summary_sentences", n("num_sentences", 3)))));
            }
            "UniversalExtractor" => {
                meta.insert("keywords".into(), json!(keywords(text, n("keyword_count", 10))));
                if b("generate_summary", true) {
                    meta.insert("summary".into(), json!(summary(text, n("summary_sentences", 3))));
                }
                if b("extract_entities", true) {
                    meta.insert("entities".into(), Value::Object(entities(text)));
                }
                if b("detect_language", true) {
                    if let Some((lang, conf)) = language(text) {
                        meta.insert("language".into(), json!(lang));
                        meta.insert("language_confidence".into(), json!((conf * 100.0).round() / 100.0));
                    }
                }
            }
            other => {
                let w = meta.entry("extractor_warnings").or_insert_with(|| json!([]));
                if let Value::Array(a) = w {
                    let msg = format!("extractor '{other}' is not supported; skipped");
                    if !a.iter().any(|x| x.as_str() == Some(msg.as_str())) {
                        a.push(json!(msg));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_summary_language_patterns() {
        let text = "Neural scaling laws describe how model loss falls with compute. Scaling laws hold across many orders of magnitude. \
                    The weather was nice. Compute-optimal training balances model size and data for scaling laws.";
        let kws = keywords(text, 5);
        assert!(kws.iter().any(|k| k.contains("scaling")), "{kws:?}");
        assert!(!kws.iter().any(|k| STOP.contains(&k.as_str())));
        let s = summary(text, 2);
        assert!(s.contains("Neural scaling laws") && !s.contains("weather"), "{s}");
        assert_eq!(language("Le chat est sur la table et il dort tranquillement toute la journée.").map(|x| x.0).as_deref(), Some("fra"));
        let mut m = Map::new();
        run(
            &[ExtractorConfig { kind: "PatternExtractor".into(), ..Default::default() }, ExtractorConfig { kind: "DateTimeExtractor".into(), ..Default::default() }],
            "a.txt",
            "Mail ada@example.org or call 555-123-4567 on 2024-01-15, see https://x.org/a.",
            &mut m,
        );
        assert_eq!(m["emails"], json!(["ada@example.org"]));
        assert_eq!(m["urls"], json!(["https://x.org/a"]));
        assert_eq!(m["phones"], json!(["555-123-4567"]));
        assert_eq!(m["dates"], json!(["2024-01-15"]));
        assert!(glob("*.PDF", "report.pdf") && glob("report_*.csv", "report_q1.csv") && !glob("*.md", "x.txt"));
    }
}
