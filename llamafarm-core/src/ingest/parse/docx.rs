//! Word documents: paragraphs and tables of `word/document.xml`, with page
//! headers, footers and comments as [`super::ParseOptions`] asks.

use super::{zip_entry, ParseInput, ParseOptions, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// Word documents (`DocxParser_*`, `WordParser_*`).
pub struct DocxParser;

impl Parser for DocxParser {
    fn name(&self) -> &'static str {
        "docx"
    }
    fn label(&self) -> &'static str {
        "DOCX"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["docx", "word"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["docx", "docm"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        docx(input.bytes, input.file_name, &input.options)
    }
}

/// Paragraphs and tables of `word/document.xml` (heading styles start sections), with
/// the page headers first and the footers and comments last as `opts` asks.
fn docx(bytes: &[u8], name: &str, opts: &ParseOptions) -> Result<ParsedDoc> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| Error::parse(format!("'{name}'"), format!("not a DOCX (zip): {e}")))?;
    let mut budget = super::ZIP_BUDGET;
    let xml = zip_entry(&mut zip, "word/document.xml", name, &mut budget)?.ok_or_else(|| Error::parse(format!("'{name}'"), "no word/document.xml"))?;
    // Text of every part named `word/{prefix}N.xml`, each distinct paragraph once
    // (first-page, even and default headers often repeat each other).
    let mut parts = |prefix: &str| -> Result<Option<String>> {
        let mut names: Vec<String> = zip.file_names().filter(|n| n.starts_with(&format!("word/{prefix}")) && n.ends_with(".xml")).map(String::from).collect();
        names.sort_by_key(|n| (n.len(), n.clone()));
        let mut seen = std::collections::HashSet::new();
        let mut paras = Vec::new();
        for part in names {
            let Some(x) = zip_entry(&mut zip, &part, name, &mut budget)? else {
                continue;
            };
            let mut secs = Vec::new();
            // A damaged header or footer loses only itself, not the document.
            if let Err(e) = docx_part(&x, name, &part, true, &mut secs) {
                tracing::warn!(file = name, error = %e, "skipping a DOCX part");
                continue;
            }
            for p in secs.iter().flat_map(|s| s.text.split("\n\n")).map(str::trim).filter(|p| !p.is_empty()) {
                if seen.insert(p.to_string()) {
                    paras.push(p.to_string());
                }
            }
        }
        Ok((!paras.is_empty()).then(|| paras.join("\n\n")))
    };
    let mut sections: Vec<Section> = Vec::new();
    let header = if opts.headers { parts("header")? } else { None };
    let footer = if opts.footers { parts("footer")? } else { None };
    let comments = if opts.comments { parts("comments")? } else { None };
    if let Some(text) = header {
        sections.push(Section { text, heading: Some("Header".into()), ..Default::default() });
    }
    docx_part(&xml, name, "word/document.xml", opts.tables, &mut sections)?;
    for (text, heading) in [(footer, "Footer"), (comments, "Comments")] {
        if let Some(text) = text {
            sections.push(Section { text, heading: Some(heading.into()), ..Default::default() });
        }
    }
    Ok(ParsedDoc { sections, parser: "docx", ..Default::default() })
}

/// Sections of one WordprocessingML part (paragraphs; table rows as `a | b` lines when
/// `tables`, else skipped).
fn docx_part(xml: &str, name: &str, part: &str, tables: bool, sections: &mut Vec<Section>) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut heading: Option<String> = None;
    let mut cur = String::new(); // paragraphs of the current section
    let mut para = String::new();
    let mut para_style = String::new();
    let mut in_text = false;
    let mut cells: Vec<String> = Vec::new();
    let mut table_depth = 0usize;
    loop {
        let Some(ev) = super::xml_event(&mut reader, name, part, in_text.then_some(&mut para))? else { continue };
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "t" => in_text = true,
                "tab" => para.push('\t'),
                "br" | "cr" => para.push('\n'),
                "pStyle" => {
                    if let Some(a) = e.attributes().flatten().find(|a| a.key.local_name().as_ref() == "val") {
                        para_style = a.value.into_owned();
                    }
                }
                "tbl" => table_depth += 1,
                "tr" => cells.clear(),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let p = para.trim().to_string();
                    para.clear();
                    let style = std::mem::take(&mut para_style).to_ascii_lowercase();
                    if p.is_empty() {
                        continue;
                    }
                    if table_depth > 0 {
                        if tables {
                            cells.push(p);
                        }
                    } else if style.starts_with("heading") || style == "title" {
                        if !cur.trim().is_empty() {
                            sections.push(Section { text: cur.trim().to_string(), heading: heading.clone(), ..Default::default() });
                        }
                        cur = format!("{p}\n\n");
                        heading = Some(p);
                    } else {
                        cur.push_str(&p);
                        cur.push_str("\n\n");
                    }
                }
                "tc" => {}
                "tr" if !cells.is_empty() => {
                    cur.push_str(&cells.join(" | "));
                    cur.push('\n');
                    cells.clear();
                }
                "tbl" => {
                    table_depth = table_depth.saturating_sub(1);
                    if tables {
                        cur.push('\n');
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !cur.trim().is_empty() {
        sections.push(Section { text: cur.trim().to_string(), heading, ..Default::default() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docx_with(parts: &[(&str, &str)]) -> Vec<u8> {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, body) in parts {
            z.start_file(*name, o).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn docx_headers_footers_comments_and_tables_follow_the_options() {
        let w = |body: &str| format!(r#"<w:document xmlns:w="w"><w:body>{body}</w:body></w:document>"#);
        let p = |t: &str| format!("<w:p><w:r><w:t>{t}</w:t></w:r></w:p>");
        let doc = w(&format!("{}<w:tbl><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr></w:tbl>", p("Body text."), p("cell a"), p("cell b")));
        let hdr = format!("<w:hdr>{}</w:hdr>", p("ACME Confidential"));
        let bytes = docx_with(&[
            ("word/document.xml", &doc),
            ("word/header1.xml", &hdr),
            ("word/header2.xml", &hdr), // a repeat (first-page header) appears once
            ("word/footer1.xml", &format!("<w:ftr>{}</w:ftr>", p("Page footer"))),
            ("word/comments.xml", &format!("<w:comments><w:comment>{}</w:comment></w:comments>", p("Reviewer note"))),
        ]);
        let all = |d: &ParsedDoc| d.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n");
        // python-docx defaults: headers and tables on, footers and comments off.
        let d = DocxParser.parse(&ParseInput::new(&bytes, "x.docx")).unwrap();
        assert_eq!(d.sections[0].heading.as_deref(), Some("Header"));
        assert_eq!(d.sections[0].text, "ACME Confidential");
        assert!(all(&d).contains("cell a | cell b"));
        assert!(!all(&d).contains("Page footer") && !all(&d).contains("Reviewer note"));
        let cfg = |v: serde_json::Value| v.as_object().unwrap().clone();
        let o = ParseOptions::from_config(
            "DocxParser_PythonDocx",
            &cfg(serde_json::json!({"extract_footers": true, "extract_comments": true, "extract_tables": false})),
        );
        let d = DocxParser.parse(&ParseInput::new(&bytes, "x.docx").with_options(o)).unwrap();
        let t = all(&d);
        assert!(t.contains("Page footer") && t.contains("Reviewer note") && t.contains("Body text."), "{t}");
        assert!(!t.contains("cell a"), "tables off: {t}");
        assert_eq!(t.matches("ACME Confidential").count(), 1);
        assert_eq!(d.sections.last().unwrap().heading.as_deref(), Some("Comments"));
        // LlamaIndex's parser: headers and footers only with include_header_footer.
        let li = ParseOptions::from_config("DocxParser_LlamaIndex", &Default::default());
        assert!(!all(&DocxParser.parse(&ParseInput::new(&bytes, "x.docx").with_options(li)).unwrap()).contains("ACME"));
        let li = ParseOptions::from_config("DocxParser_LlamaIndex", &cfg(serde_json::json!({"include_header_footer": true})));
        let t = all(&DocxParser.parse(&ParseInput::new(&bytes, "x.docx").with_options(li)).unwrap());
        assert!(t.contains("ACME") && t.contains("Page footer"));
        // A malformed header loses only itself; a malformed body is an error naming the part.
        let bad = docx_with(&[("word/document.xml", &doc), ("word/header1.xml", "<w:hdr><w:p></w:hdr>")]);
        let d = DocxParser.parse(&ParseInput::new(&bad, "x.docx")).unwrap();
        assert!(all(&d).contains("Body text.") && d.sections[0].heading.is_none());
        let bad = docx_with(&[("word/document.xml", "<w:document><w:body><w:p></w:body>")]);
        let e = DocxParser.parse(&ParseInput::new(&bad, "x.docx")).unwrap_err().to_string();
        assert!(e.contains("document.xml"), "{e}");
    }

    #[test]
    fn references_resolve_and_a_tag_with_many_attributes_parses_in_linear_time() {
        let body = r#"<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Fish &amp; chips at caf&#233; &#x2014; &lt;b&gt; &custom;</w:t></w:r></w:p>"#;
        // RUSTSEC-2026-0194: before quick-xml 0.41 the duplicate check on a start tag's
        // attribute names was quadratic (80,000 attributes on one tag took about 6 s).
        let attrs: String = (0..150_000).map(|i| format!(" a{i}=\"x\"")).collect();
        let doc = format!(r#"{body}<w:p><w:pPr><w:pStyle{attrs} w:val="Heading1"/></w:pPr><w:r><w:t>Title</w:t></w:r></w:p></w:body></w:document>"#);
        let bytes = docx_with(&[("word/document.xml", &doc)]);
        let t0 = std::time::Instant::now();
        let d = DocxParser.parse(&ParseInput::new(&bytes, "x.docx")).unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(d.sections[0].text, "Fish & chips at caf\u{e9} \u{2014} <b> &custom;");
        assert_eq!(d.sections[1].heading.as_deref(), Some("Title"));
    }
}
