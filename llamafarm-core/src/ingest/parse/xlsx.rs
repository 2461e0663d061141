//! Excel workbooks: the rows of every sheet, the first row as the header.

use super::{zip_entry, ParseInput, ParsedDoc, Parser, Section};
use crate::error::{Error, Result};

/// Excel workbooks (`ExcelParser_*`, `XLSXParser_*`).
pub struct XlsxParser;

impl Parser for XlsxParser {
    fn name(&self) -> &'static str {
        "xlsx"
    }
    fn label(&self) -> &'static str {
        "Excel"
    }
    fn type_prefixes(&self) -> &'static [&'static str] {
        &["excel", "xlsx"]
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["xlsx", "xlsm"]
    }
    fn parse(&self, input: &ParseInput<'_>) -> Result<ParsedDoc> {
        xlsx(input.bytes, input.file_name)
    }
}

/// Rows of every worksheet (shared strings and inline strings resolved); the first
/// row of a sheet is its header, repeated as `header: value` in each row.
fn xlsx(bytes: &[u8], name: &str) -> Result<ParsedDoc> {
    use quick_xml::events::Event;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| Error::parse(format!("'{name}'"), format!("not an XLSX (zip): {e}")))?;
    let mut shared: Vec<String> = Vec::new();
    let mut budget = super::ZIP_BUDGET;
    if let Some(xml) = zip_entry(&mut zip, "xl/sharedStrings.xml", name, &mut budget)? {
        let mut r = quick_xml::Reader::from_str(&xml);
        let (mut cur, mut in_t) = (String::new(), false);
        loop {
            let Some(ev) = super::xml_event(&mut r, name, "sharedStrings.xml", in_t.then_some(&mut cur))? else { continue };
            match ev {
                Event::Start(e) if e.local_name().as_ref() == "t" => in_t = true,
                Event::End(e) if e.local_name().as_ref() == "t" => in_t = false,
                Event::End(e) if e.local_name().as_ref() == "si" => shared.push(std::mem::take(&mut cur)),
                Event::Eof => break,
                _ => {}
            }
        }
    }
    let mut sheets: Vec<String> = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .filter(|n| n.starts_with("xl/worksheets/sheet") && n.ends_with(".xml"))
        .collect();
    sheets.sort_by_key(|n| n.trim_start_matches("xl/worksheets/sheet").trim_end_matches(".xml").parse::<u32>().unwrap_or(0));
    let mut sections = Vec::new();
    for (si, sheet) in sheets.iter().enumerate() {
        let Some(xml) = zip_entry(&mut zip, sheet, name, &mut budget)? else { continue };
        let mut r = quick_xml::Reader::from_str(&xml);
        let (mut row, mut header): (Vec<String>, Option<Vec<String>>) = (Vec::new(), None);
        let (mut cell_type, mut val, mut in_v) = (String::new(), String::new(), false);
        loop {
            let Some(ev) = super::xml_event(&mut r, name, sheet, in_v.then_some(&mut val))? else { continue };
            match ev {
                Event::Start(e) => match e.local_name().as_ref() {
                    "c" => {
                        cell_type = e.attributes().flatten().find(|a| a.key.local_name().as_ref() == "t").map(|a| a.value.into_owned()).unwrap_or_default();
                        val.clear();
                    }
                    "v" | "t" => in_v = true,
                    _ => {}
                },
                Event::End(e) => match e.local_name().as_ref() {
                    "v" | "t" => in_v = false,
                    "c" => {
                        let v =
                            if cell_type == "s" { val.trim().parse::<usize>().ok().and_then(|i| shared.get(i).cloned()).unwrap_or_default() } else { val.clone() };
                        row.push(v.trim().to_string());
                    }
                    "row" => {
                        let cells = std::mem::take(&mut row);
                        if cells.iter().all(|c| c.is_empty()) {
                            continue;
                        }
                        match &header {
                            None => header = Some(cells),
                            Some(h) => {
                                let text = cells
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, v)| !v.is_empty())
                                    .map(|(i, v)| match h.get(i).filter(|x| !x.is_empty()) {
                                        Some(k) => format!("{k}: {v}"),
                                        None => v.clone(),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                sections.push(Section { text, is_row: true, heading: Some(format!("sheet {}", si + 1)), ..Default::default() });
                            }
                        }
                    }
                    _ => {}
                },
                Event::Eof => break,
                _ => {}
            }
        }
    }
    Ok(ParsedDoc { sections, parser: "xlsx", ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlsx_rows_with_shared_strings() {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file("xl/sharedStrings.xml", o).unwrap();
            z.write_all(br#"<sst><si><t>name</t></si><si><t>qty</t></si><si><t>apples &amp; pears</t></si></sst>"#).unwrap();
            z.start_file("xl/worksheets/sheet1.xml", o).unwrap();
            z.write_all(br#"<worksheet><sheetData><row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row><row><c t="s"><v>2</v></c><c><v>12</v></c></row><row><c t="inlineStr"><is><t>plums</t></is></c><c><v>3</v></c></row></sheetData></worksheet>"#).unwrap();
            z.finish().unwrap();
        }
        let d = XlsxParser.parse(&ParseInput::new(buf.get_ref(), "stock.xlsx")).unwrap();
        let rows: Vec<&str> = d.sections.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(rows, vec!["name: apples & pears, qty: 12", "name: plums, qty: 3"]);
        assert!(XlsxParser.parse(&ParseInput::new(b"nope", "x.xlsx")).is_err());
    }
}
