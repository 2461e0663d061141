//! Pages from uploaded bytes: images (PNG, JPEG, GIF, WebP, BMP), multi-page TIFFs and
//! PDFs.
//!
//! A PDF page's text layer is used where it has one; a page without one is OCR'd
//! from the images it draws (DCT/JPEG, JPEG 2000, Flate, LZW, ASCII85 and raw pixels in
//! gray, RGB, CMYK or indexed colour, CCITT G3/G4 fax, JBIG2 with its shared
//! `JBIG2Globals`). A page that cannot be read is
//! [`PageContent::Failed`] with the reason; the others are still read. Whole-file
//! problems (empty, unknown type, corrupt, encrypted, too many pixels) are errors.

use crate::error::{Error, Result};
use image::RgbImage;
use pdf_extract::{Dictionary, Document, Object, ObjectId, Stream};
use std::io::Cursor;

/// The largest page image decoded, in pixels (a 20000x20000 image is refused before
/// its pixels are allocated).
pub const MAX_PIXELS: u64 = 64_000_000;
/// The most pages read from one file.
pub const MAX_PAGES: usize = 2000;

/// One page of an input.
#[derive(Debug, Clone)]
pub struct Page {
    /// 0-based index among the pages of the request.
    pub index: usize,
    /// What the page holds.
    pub content: PageContent,
    /// For a PDF page with a text layer: the images it draws, stacked, for OCR on request.
    pub image: Option<RgbImage>,
}

/// What a page holds.
#[derive(Debug, Clone)]
pub enum PageContent {
    /// Pixels to OCR.
    Image(RgbImage),
    /// A PDF text layer.
    Text(String),
    /// The page could not be read; the reason.
    Failed(String),
}

/// The file types accepted, for messages.
pub const SUPPORTED_TYPES: &str = "PDF, PNG, JPEG, GIF, WebP, BMP, TIFF";

/// Decode `bytes` named `name` into pages numbered from `first_index`.
pub fn load_pages(bytes: &[u8], name: &str, first_index: usize) -> Result<Vec<Page>> {
    let what = if name.is_empty() { "the input".to_string() } else { format!("'{name}'") };
    if bytes.is_empty() {
        return Err(Error::parse(what, "the file is empty"));
    }
    if is_pdf(bytes) {
        return pdf_pages(bytes, &what, first_index);
    }
    let format = image::guess_format(bytes).map_err(|_| Error::parse(what.clone(), format!("not a supported file type (supported: {SUPPORTED_TYPES})")))?;
    use image::ImageFormat as F;
    match format {
        F::Tiff => tiff_pages(bytes, &what, first_index),
        F::Png | F::Jpeg | F::Gif | F::WebP | F::Bmp => Ok(vec![Page { index: first_index, content: PageContent::Image(decode_image(bytes, &what)?), image: None }]),
        other => Err(Error::parse(what, format!("{other:?} images are not supported (supported: {SUPPORTED_TYPES})"))),
    }
}

/// Whether `bytes` look like a PDF.
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF") || bytes.windows(5).take(1024).any(|w| w == b"%PDF-")
}

/// Decode one image (not a PDF) to RGB, refusing more than [`MAX_PIXELS`] before decoding.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<RgbImage> {
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::parse(what.to_string(), e.to_string()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| Error::parse(what.to_string(), format!("could not decode the image: {e}")))?;
    check_pixels(w as u64, h as u64, what)?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::parse(what.to_string(), e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Error::parse(what.to_string(), format!("could not decode the image: {e}")))?;
    Ok(img.to_rgb8())
}

fn check_pixels(w: u64, h: u64, what: &str) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::parse(what.to_string(), "the image has no pixels"));
    }
    if w * h > MAX_PIXELS {
        return Err(Error::InvalidField {
            field: "file".into(),
            reason: format!("{what} is {w}x{h} pixels; the limit is {} megapixels (scale it down first)", MAX_PIXELS / 1_000_000),
        });
    }
    Ok(())
}

fn tiff_pages(bytes: &[u8], what: &str, first: usize) -> Result<Vec<Page>> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;
    let mut dec = Decoder::new(Cursor::new(bytes)).map_err(|e| Error::parse(what.to_string(), format!("could not decode the TIFF: {e}")))?;
    let mut pages = Vec::new();
    loop {
        let index = first + pages.len();
        let page = (|| -> std::result::Result<RgbImage, String> {
            let (w, h) = dec.dimensions().map_err(|e| e.to_string())?;
            check_pixels(w as u64, h as u64, what).map_err(|e| e.to_string())?;
            let ct = dec.colortype().map_err(|e| e.to_string())?;
            let data = match dec.read_image().map_err(|e| e.to_string())? {
                DecodingResult::U8(v) => v,
                DecodingResult::U16(v) => v.into_iter().map(|x| (x >> 8) as u8).collect(),
                _ => return Err("TIFF sample format not supported (float or 32/64-bit samples)".into()),
            };
            let (w, h) = (w as usize, h as usize);
            let px = |i: usize| -> [u8; 3] {
                match ct {
                    ColorType::Gray(_) => [data[i]; 3],
                    ColorType::GrayA(_) => [data[2 * i]; 3],
                    ColorType::RGB(_) => [data[3 * i], data[3 * i + 1], data[3 * i + 2]],
                    ColorType::RGBA(_) => [data[4 * i], data[4 * i + 1], data[4 * i + 2]],
                    ColorType::CMYK(_) => cmyk(data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]),
                    _ => [255; 3],
                }
            };
            let per = match ct {
                ColorType::Gray(1) => 0,
                ColorType::Gray(8) | ColorType::Gray(16) => 1,
                ColorType::GrayA(8) | ColorType::GrayA(16) => 2,
                ColorType::RGB(8) | ColorType::RGB(16) => 3,
                ColorType::RGBA(8) | ColorType::RGBA(16) | ColorType::CMYK(8) | ColorType::CMYK(16) => 4,
                other => return Err(format!("TIFF colour type {other:?} not supported")),
            };
            if per == 0 {
                // Bilevel, rows padded to bytes, 1 = white (BlackIsZero).
                let stride = w.div_ceil(8);
                if data.len() < stride * h {
                    return Err("TIFF image data is truncated".into());
                }
                return Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
                    let bit = data[y as usize * stride + x as usize / 8] >> (7 - x % 8) & 1;
                    image::Rgb([if bit == 1 { 255 } else { 0 }; 3])
                }));
            }
            if data.len() < w * h * per {
                return Err("TIFF image data is truncated".into());
            }
            Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb(px(y as usize * w + x as usize))))
        })();
        pages.push(Page { index, content: page.map(PageContent::Image).unwrap_or_else(PageContent::Failed), image: None });
        if !dec.more_images() || pages.len() >= MAX_PAGES {
            break;
        }
        if let Err(e) = dec.next_image() {
            pages.push(Page { index: first + pages.len(), content: PageContent::Failed(format!("could not read the next TIFF page: {e}")), image: None });
            break;
        }
    }
    Ok(pages)
}

fn cmyk(c: u8, m: u8, y: u8, k: u8) -> [u8; 3] {
    let f = |v: u8| ((255 - v as u32) * (255 - k as u32) / 255) as u8;
    [f(c), f(m), f(y)]
}

fn pdf_pages(bytes: &[u8], what: &str, first: usize) -> Result<Vec<Page>> {
    let doc = std::panic::catch_unwind(|| Document::load_mem(bytes)).map_err(|_| Error::parse(what.to_string(), "malformed PDF"))?.map_err(|e| {
        let msg = e.to_string();
        if msg.to_lowercase().contains("encrypt") || msg.to_lowercase().contains("password") {
            Error::parse(what.to_string(), format!("the PDF is encrypted: {msg}"))
        } else {
            Error::parse(what.to_string(), format!("malformed PDF: {msg}"))
        }
    })?;
    if doc.is_encrypted() {
        return Err(Error::parse(what.to_string(), "the PDF is encrypted (password-protected); decrypt it first"));
    }
    let page_ids: Vec<ObjectId> = doc.get_pages().into_values().collect();
    if page_ids.is_empty() {
        return Err(Error::parse(what.to_string(), "the PDF has no pages"));
    }
    if page_ids.len() > MAX_PAGES {
        return Err(Error::InvalidField { field: "file".into(), reason: format!("{what} has {} pages; the limit is {MAX_PAGES}", page_ids.len()) });
    }
    // The text layer, page by page (pdf-extract panics on some malformed files).
    let texts: Vec<String> = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes)).ok().and_then(|r| r.ok()).unwrap_or_default();
    let mut pages = Vec::with_capacity(page_ids.len());
    for (i, id) in page_ids.iter().enumerate() {
        let index = first + i;
        let text = texts.get(i).map(|t| t.trim()).filter(|t| !t.is_empty());
        let images = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| page_images(&doc, *id))).unwrap_or_else(|_| Err("malformed page".into()));
        let page = match (text, images) {
            (Some(t), imgs) => Page { index, content: PageContent::Text(crate::ingest::parse::normalize_ws(t)), image: imgs.ok().flatten() },
            (None, Ok(Some(img))) => Page { index, content: PageContent::Image(img), image: None },
            (None, Ok(None)) => Page { index, content: PageContent::Failed("the page has no text layer and no image".into()), image: None },
            (None, Err(reason)) => Page { index, content: PageContent::Failed(reason), image: None },
        };
        pages.push(page);
    }
    Ok(pages)
}

/// The images a page draws (its XObjects, one level of forms), stacked top to bottom.
fn page_images(doc: &Document, page: ObjectId) -> std::result::Result<Option<RgbImage>, String> {
    let mut streams = Vec::new();
    let mut failures = Vec::new();
    let res = page_resources(doc, page);
    collect_images(doc, res, 0, &mut streams);
    let mut images = Vec::new();
    for s in streams {
        match decode_pdf_image(doc, s) {
            Ok(img) => images.push(img),
            Err(e) => failures.push(e),
        }
    }
    if images.is_empty() {
        return match failures.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(None),
        };
    }
    if images.len() == 1 {
        return Ok(images.pop());
    }
    let w = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let h: u32 = images.iter().map(|i| i.height()).sum();
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(format!("the page's images are {w}x{h} pixels together; the limit is {} megapixels", MAX_PIXELS / 1_000_000));
    }
    let mut out = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for img in images {
        image::imageops::replace(&mut out, &img, 0, y as i64);
        y += img.height();
    }
    Ok(Some(out))
}

fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut node = doc.get_dictionary(page).ok()?;
    for _ in 0..32 {
        if let Ok(r) = node.get(b"Resources") {
            return deref(doc, r).and_then(|o| o.as_dict().ok());
        }
        let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

fn deref<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
    match o {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

fn collect_images<'a>(doc: &'a Document, resources: Option<&'a Dictionary>, depth: usize, out: &mut Vec<&'a Stream>) {
    let Some(xobjects) = resources.and_then(|r| r.get(b"XObject").ok()).and_then(|x| deref(doc, x)).and_then(|x| x.as_dict().ok()) else { return };
    for (_, v) in xobjects.iter() {
        let Some(Object::Stream(s)) = deref(doc, v) else { continue };
        match s.dict.get(b"Subtype").and_then(|t| t.as_name()) {
            Ok(b"Image") => out.push(s),
            Ok(b"Form") if depth < 2 => {
                let res = s.dict.get(b"Resources").ok().and_then(|r| deref(doc, r)).and_then(|r| r.as_dict().ok());
                collect_images(doc, res, depth + 1, out);
            }
            _ => {}
        }
    }
}

fn int(doc: &Document, d: &Dictionary, key: &[u8]) -> Option<i64> {
    d.get(key).ok().and_then(|o| deref(doc, o)).and_then(|o| o.as_i64().ok())
}

fn decode_pdf_image(doc: &Document, s: &Stream) -> std::result::Result<RgbImage, String> {
    let d = &s.dict;
    let (w, h) = (int(doc, d, b"Width").unwrap_or(0), int(doc, d, b"Height").unwrap_or(0));
    if w <= 0 || h <= 0 {
        return Err("an image with no size".into());
    }
    check_pixels(w as u64, h as u64, "a page image").map_err(|e| e.to_string())?;
    let filters: Vec<Vec<u8>> = match d.get(b"Filter").ok().and_then(|f| deref(doc, f)) {
        Some(Object::Name(n)) => vec![n.clone()],
        Some(Object::Array(a)) => a.iter().filter_map(|o| o.as_name().ok().map(|n| n.to_vec())).collect(),
        _ => vec![],
    };
    let codec = filters.last().filter(|f| matches!(f.as_slice(), b"DCTDecode" | b"DCT" | b"CCITTFaxDecode" | b"CCF" | b"JBIG2Decode" | b"JPXDecode")).cloned();
    // Undo the generic filters (Flate, LZW, ASCII85, ASCIIHex, RunLength) before the image codec.
    let data = {
        let generic = if codec.is_some() { &filters[..filters.len() - 1] } else { &filters[..] };
        let parms = d.get(b"DecodeParms").ok().cloned();
        let mut data = s.content.clone();
        for (i, f) in generic.iter().enumerate() {
            data = match f.as_slice() {
                b"RunLengthDecode" | b"RL" => run_length(&data),
                b"ASCIIHexDecode" | b"AHx" => ascii_hex(&data),
                other => {
                    let mut dict = Dictionary::new();
                    dict.set("Filter", Object::Name(other.to_vec()));
                    // Predictor parameters belong to the last generic filter.
                    if let (Some(p), true) = (&parms, i + 1 == generic.len() && codec.is_none()) {
                        dict.set("DecodeParms", p.clone());
                    }
                    Stream::new(dict, data).decompressed_content().map_err(|e| format!("could not decompress an image: {e}"))?
                }
            };
        }
        data
    };
    match codec.as_deref() {
        Some(b"DCTDecode") | Some(b"DCT") => {
            let img = image::load_from_memory_with_format(&data, image::ImageFormat::Jpeg).map_err(|e| format!("could not decode a JPEG image: {e}"))?;
            let mut rgb = img.to_rgb8();
            if matches!(img.color(), image::ColorType::Rgba8) && color_space_name(doc, d).as_deref() == Some("DeviceCMYK") {
                rgb = RgbImage::from_fn(img.width(), img.height(), |x, y| {
                    let p = img.as_rgba8().map(|i| i.get_pixel(x, y).0).unwrap_or([0, 0, 0, 0]);
                    image::Rgb(cmyk(p[0], p[1], p[2], p[3]))
                });
            }
            Ok(rgb)
        }
        Some(b"CCITTFaxDecode") | Some(b"CCF") => ccitt(doc, d, &data, w as u32, h as u32),
        Some(b"JBIG2Decode") => jbig2(doc, d, &data),
        Some(b"JPXDecode") => jpx(&data),
        _ => raw_pixels(doc, d, &data, w as usize, h as usize),
    }
}

fn run_length(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut i = 0;
    while i < data.len() {
        let n = data[i] as usize;
        i += 1;
        match n {
            128 => break,
            0..=127 => {
                let end = (i + n + 1).min(data.len());
                out.extend_from_slice(&data[i..end]);
                i = end;
            }
            _ => {
                if let Some(&b) = data.get(i) {
                    out.extend(std::iter::repeat_n(b, 257 - n));
                }
                i += 1;
            }
        }
    }
    out
}

fn ascii_hex(data: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = data.iter().take_while(|&&c| c != b'>').filter_map(|&c| (c as char).to_digit(16).map(|d| d as u8)).collect();
    digits.chunks(2).map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0)).collect()
}

fn color_space_name(doc: &Document, d: &Dictionary) -> Option<String> {
    match d.get(b"ColorSpace").ok().and_then(|c| deref(doc, c))? {
        Object::Name(n) => Some(String::from_utf8_lossy(n).into_owned()),
        Object::Array(a) => a.first().and_then(|o| o.as_name().ok()).map(|n| String::from_utf8_lossy(n).into_owned()),
        _ => None,
    }
}

fn raw_pixels(doc: &Document, d: &Dictionary, data: &[u8], w: usize, h: usize) -> std::result::Result<RgbImage, String> {
    let bpc = int(doc, d, b"BitsPerComponent").unwrap_or(8) as usize;
    let is_mask = d.get(b"ImageMask").ok().and_then(|o| o.as_bool().ok()).unwrap_or(false);
    let cs = d.get(b"ColorSpace").ok().and_then(|c| deref(doc, c));
    // (components, palette) from the colour space.
    let (comps, palette): (usize, Option<(usize, Vec<u8>)>) = if is_mask {
        (1, None)
    } else {
        match cs {
            Some(Object::Name(n)) => (name_components(n), None),
            Some(Object::Array(a)) => match a.first().and_then(|o| o.as_name().ok()) {
                Some(b"Indexed") | Some(b"I") => {
                    let base = a.get(1).and_then(|o| deref(doc, o));
                    let base_comps = match base {
                        Some(Object::Name(n)) => name_components(n),
                        Some(Object::Array(b)) => b.get(1).and_then(|o| deref(doc, o)).and_then(icc_components(doc)).unwrap_or(3),
                        _ => 3,
                    };
                    let lookup = match a.get(3).and_then(|o| deref(doc, o)) {
                        Some(Object::String(s, _)) => s.clone(),
                        Some(Object::Stream(s)) => s.decompressed_content().unwrap_or_else(|_| s.content.clone()),
                        _ => Vec::new(),
                    };
                    (1, Some((base_comps, lookup)))
                }
                Some(b"ICCBased") => (a.get(1).and_then(|o| deref(doc, o)).and_then(icc_components(doc)).unwrap_or(3), None),
                Some(b"CalRGB") | Some(b"Lab") => (3, None),
                Some(b"CalGray") => (1, None),
                Some(b"Separation") => (1, None),
                _ => (3, None),
            },
            _ => (1, None),
        }
    };
    if !matches!(bpc, 1 | 2 | 4 | 8 | 16) {
        return Err(format!("{bpc} bits per component is not supported"));
    }
    let stride = (w * comps * bpc).div_ceil(8);
    if data.len() < stride * h {
        return Err("image data is truncated".into());
    }
    let sample = |row: &[u8], i: usize| -> u32 {
        match bpc {
            8 => row[i] as u32,
            16 => row[2 * i] as u32,
            _ => {
                let bit = i * bpc;
                ((row[bit / 8] >> (8 - bpc - bit % 8)) as u32) & ((1 << bpc) - 1)
            }
        }
    };
    let max = if bpc == 16 { 255 } else { (1u32 << bpc) - 1 };
    let scale = |v: u32| (v * 255 / max) as u8;
    let decode_inverted = is_mask && {
        // An image mask paints where the sample is 0 unless /Decode is [1 0].
        !matches!(d.get(b"Decode").ok().and_then(|o| o.as_array().ok()).and_then(|a| a.first()).and_then(|o| o.as_i64().ok()), Some(1))
    };
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let row = &data[y as usize * stride..(y as usize + 1) * stride];
        let x = x as usize;
        if let Some((bc, lut)) = &palette {
            let i = sample(row, x) as usize * bc;
            let g = |k: usize| lut.get(i + k).copied().unwrap_or(0);
            return image::Rgb(match bc {
                1 => [g(0); 3],
                4 => cmyk(g(0), g(1), g(2), g(3)),
                _ => [g(0), g(1), g(2)],
            });
        }
        image::Rgb(match comps {
            1 => {
                let v = scale(sample(row, x));
                [if decode_inverted { 255 - v } else { v }; 3]
            }
            4 => cmyk(scale(sample(row, 4 * x)), scale(sample(row, 4 * x + 1)), scale(sample(row, 4 * x + 2)), scale(sample(row, 4 * x + 3))),
            _ => [scale(sample(row, 3 * x)), scale(sample(row, 3 * x + 1)), scale(sample(row, 3 * x + 2))],
        })
    }))
}

fn name_components(n: &[u8]) -> usize {
    match n {
        b"DeviceGray" | b"G" | b"CalGray" => 1,
        b"DeviceCMYK" | b"CMYK" => 4,
        _ => 3,
    }
}

fn icc_components(doc: &Document) -> impl Fn(&Object) -> Option<usize> + '_ {
    move |o| match o {
        Object::Stream(s) => int(doc, &s.dict, b"N").map(|n| n as usize),
        _ => None,
    }
}

fn ccitt(doc: &Document, d: &Dictionary, data: &[u8], w: u32, h: u32) -> std::result::Result<RgbImage, String> {
    let parms = decode_parms(doc, d);
    let k = parms.and_then(|p| int(doc, p, b"K")).unwrap_or(0);
    let cols = parms.and_then(|p| int(doc, p, b"Columns")).unwrap_or(1728) as u32;
    let black_is_1 = parms.and_then(|p| p.get(b"BlackIs1").ok()).and_then(|o| o.as_bool().ok()).unwrap_or(false);
    if cols == 0 || cols > u16::MAX as u32 {
        return Err("CCITT image with an invalid width".into());
    }
    let width = cols.min(w.max(1));
    let mut img = RgbImage::from_pixel(width, h, image::Rgb([255; 3]));
    let mut y = 0u32;
    let mut put_line = |transitions: &[u16]| {
        if y >= h {
            return;
        }
        for (x, c) in fax::decoder::pels(transitions, cols as u16).enumerate().take(width as usize) {
            let black = matches!(c, fax::Color::Black);
            let black = if black_is_1 { !black } else { black };
            if black {
                img.put_pixel(x as u32, y, image::Rgb([0; 3]));
            }
        }
        y += 1;
    };
    let ok = if k < 0 {
        fax::decoder::decode_g4(data.iter().copied(), cols as u16, Some(h.min(u16::MAX as u32) as u16), &mut put_line)
    } else {
        fax::decoder::decode_g3(data.iter().copied(), &mut put_line)
    };
    if ok.is_none() && y == 0 {
        return Err("could not decode a CCITT fax image".into());
    }
    Ok(img)
}

/// The image's `DecodeParms` dictionary (the last one where there are several filters).
fn decode_parms<'a>(doc: &'a Document, d: &'a Dictionary) -> Option<&'a Dictionary> {
    d.get(b"DecodeParms").ok().and_then(|p| deref(doc, p)).and_then(|p| match p {
        Object::Dictionary(d) => Some(d),
        Object::Array(a) => a.last().and_then(|o| deref(doc, o)).and_then(|o| o.as_dict().ok()),
        _ => None,
    })
}

/// A JBIG2 image in PDF's embedded organisation (its page's segments, with the shared
/// `JBIG2Globals` segments where `DecodeParms` names them), black as 0 as PDF reads it
/// (white where a `Decode` array `[1 0]` inverts it).
fn jbig2(doc: &Document, d: &Dictionary, data: &[u8]) -> std::result::Result<RgbImage, String> {
    let settings = hayro_jbig2::DecodeSettings::default();
    let globals = match decode_parms(doc, d).and_then(|p| p.get(b"JBIG2Globals").ok()).and_then(|g| deref(doc, g)) {
        Some(Object::Stream(g)) => {
            let bytes = if g.dict.get(b"Filter").is_ok() {
                g.decompressed_content().map_err(|e| format!("could not decompress JBIG2 globals: {e}"))?
            } else {
                g.content.clone()
            };
            Some(hayro_jbig2::Globals::new(&bytes, &settings).map_err(|e| format!("could not decode JBIG2 globals: {e}"))?)
        }
        _ => None,
    };
    let page = hayro_jbig2::Page::new_embedded(data, globals.as_ref(), &settings).map_err(|e| format!("could not read a JBIG2 image: {e}"))?;
    let (w, h) = (page.width(), page.height());
    check_pixels(w as u64, h as u64, "a JBIG2 image").map_err(|e| e.to_string())?;
    let invert = matches!(d.get(b"Decode").ok().and_then(|o| deref(doc, o)), Some(Object::Array(a)) if a.first().and_then(|o| o.as_float().ok()) == Some(1.0));
    let (black, white) = if invert { (255, 0) } else { (0, 255) };
    struct Gray {
        px: Vec<u8>,
        black: u8,
        white: u8,
    }
    impl hayro_jbig2::Decoder for Gray {
        fn push_pixel(&mut self, black: bool) {
            self.px.push(if black { self.black } else { self.white });
        }
        fn push_pixel_chunk(&mut self, black: bool, chunk_count: u32) {
            let v = if black { self.black } else { self.white };
            self.px.resize(self.px.len() + 8 * chunk_count as usize, v);
        }
        fn next_line(&mut self) {}
    }
    let mut gray = Gray { px: Vec::with_capacity(w as usize * h as usize), black, white };
    page.decode(&mut gray).map_err(|e| format!("could not decode a JBIG2 image: {e}"))?;
    let mut px = gray.px;
    px.resize(w as usize * h as usize, white);
    let img = image::GrayImage::from_raw(w, h, px).ok_or("a JBIG2 image of the wrong size")?;
    Ok(image::DynamicImage::ImageLuma8(img).to_rgb8())
}

/// A JPEG 2000 image (a JP2 file or a bare codestream): gray, RGB or CMYK samples,
/// palettes resolved, alpha dropped.
fn jpx(data: &[u8]) -> std::result::Result<RgbImage, String> {
    let img = hayro_jpeg2000::Image::new(data, &hayro_jpeg2000::DecodeSettings::default()).map_err(|e| format!("could not read a JPEG 2000 image: {e}"))?;
    let (w, h) = (img.width(), img.height());
    check_pixels(w as u64, h as u64, "a JPEG 2000 image").map_err(|e| e.to_string())?;
    let mut ctx = hayro_jpeg2000::DecoderContext::default();
    let decoded = img.decode(&mut ctx).map_err(|e| format!("could not decode a JPEG 2000 image: {e}"))?;
    let samples = decoded.data_u8();
    let n = (w as usize * h as usize).max(1);
    let stride = samples.len() / n;
    let colour = (img.color_space().num_channels() as usize).min(stride);
    if stride == 0 || samples.len() != stride * n {
        return Err("a JPEG 2000 image with samples of the wrong size".into());
    }
    let px = |i: usize| -> [u8; 3] {
        let p = &samples[i * stride..i * stride + stride];
        match colour {
            4 => cmyk(p[0], p[1], p[2], p[3]),
            3 => [p[0], p[1], p[2]],
            _ => [p[0]; 3],
        }
    };
    Ok(RgbImage::from_fn(w, h, |x, y| image::Rgb(px(y as usize * w as usize + x as usize))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn images_decode_and_bad_input_is_a_clear_error() {
        let pages = load_pages(&png(30, 20), "a.png", 3).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].index, 3);
        assert!(matches!(&pages[0].content, PageContent::Image(i) if i.dimensions() == (30, 20)));

        let e = load_pages(b"", "empty.png", 0).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = load_pages(b"hello world, not an image", "x.txt", 0).unwrap_err().to_string();
        assert!(e.contains("not a supported file type"), "{e}");
        let mut jpeg = Cursor::new(Vec::new());
        RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])).write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
        let jpeg = jpeg.into_inner();
        let e = load_pages(&jpeg[..jpeg.len() / 3], "cut.jpg", 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid, "{e}");
    }

    #[test]
    fn a_huge_image_is_refused_from_its_header() {
        // A 20000x20000 PNG (header and an empty first data chunk): refused by size, not decoded.
        let chunk = |png: &mut Vec<u8>, data: &[u8]| {
            png.extend_from_slice(&(data.len() as u32 - 4).to_be_bytes());
            png.extend_from_slice(data);
            png.extend_from_slice(&crc32(data).to_be_bytes());
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, &ihdr);
        chunk(&mut png, b"IDAT");
        let e = load_pages(&png, "big.png", 0).unwrap_err().to_string();
        assert!(e.contains("20000x20000") && e.contains("megapixels"), "{e}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn multi_page_tiffs_give_every_page() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).unwrap();
            enc.write_image::<tiff::encoder::colortype::RGB8>(4, 3, &[128u8; 36]).unwrap();
            enc.write_image::<tiff::encoder::colortype::Gray8>(5, 2, &[7u8; 10]).unwrap();
        }
        let pages = load_pages(buf.get_ref(), "two.tiff", 0).unwrap();
        assert_eq!(pages.len(), 2);
        assert!(matches!(&pages[1].content, PageContent::Image(i) if i.dimensions() == (5, 2) && i.get_pixel(0, 0).0 == [7, 7, 7]));
    }

    #[test]
    fn run_length_and_hex_filters_decode() {
        // 2 literal bytes, then 3 copies of 7, then end of data.
        assert_eq!(run_length(&[1, 10, 11, 254, 7, 128, 99]), vec![10, 11, 7, 7, 7]);
        assert_eq!(ascii_hex(b"0A ff 1>zz"), vec![10, 255, 16]);
    }

    #[test]
    fn pdfs_without_pages_or_broken_are_errors() {
        let e = load_pages(b"%PDF-1.4\n%%EOF", "bad.pdf", 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    }
}
