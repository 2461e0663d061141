//! OCR on real models and real images: the PP-OCRv6 models `scripts/fetch-models.sh`
//! fetches, the test images in `../shared/data` (skipped with a message when absent),
//! and ocrs's pipeline on tiny models in its layout (`tests/fixtures/ocrs-tiny`,
//! written by `benches/peers/ocrs_tiny_models.py`).

use super::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent (the shared evaluation data)", p.display());
        None
    }
}

fn vision() -> &'static Vision {
    static V: OnceLock<Vision> = OnceLock::new();
    V.get_or_init(|| Vision::new(crate::ModelCache::from_env()))
}

fn ocr_file(path: &Path) -> OcrOutput {
    let bytes = std::fs::read(path).unwrap();
    let (out, errors) = vision().ocr_bytes(&bytes, &path.display().to_string(), &OcrOptions::default()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    out
}

/// Word F1 of PP-OCRv6 small on ocrs's two test images, against their expected text.
/// Measured 0.97 and 0.98; the threshold leaves room for other CPUs' float rounding.
#[test]
fn ppocr_reads_the_ocrs_golden_images() {
    let Some(dir) = shared("ocr/ocrs") else { return };
    for name in ["polar-bears", "why-rust"] {
        let out = ocr_file(&dir.join(format!("{name}.png")));
        let truth = std::fs::read_to_string(dir.join(format!("{name}.expected.txt"))).unwrap();
        let (p, r, f1) = word_f1(&out.pages[0].text, &truth);
        eprintln!("{name}: precision {p:.3} recall {r:.3} F1 {f1:.3}");
        assert!(f1 >= 0.90, "{name}: F1 {f1:.3}\n{}", out.pages[0].text);
        let page = &out.pages[0];
        assert!(page.confidence > 0.8 && page.lines.iter().all(|l| l.bbox[0] < l.bbox[2] && l.bbox[1] < l.bbox[3] && l.bbox[2] <= page.width as f32 + 1.0));
    }
}

/// The receipt of the original's OCR example (a synthetic receipt under a diagonal
/// "ReceiptFaker" watermark), against its text transcribed by hand
/// (`tests/fixtures/receipt.expected.txt`, watermarks left out).
#[test]
fn ppocr_reads_the_receipt_and_extracts_its_rows() {
    let Some(path) = shared("llamafarm-examples/ocr_and_document/receipt.png") else { return };
    let out = ocr_file(&path);
    let text = &out.pages[0].text;
    let truth = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/receipt.expected.txt")).unwrap();
    let (p, r, f1) = word_f1(text, &truth);
    eprintln!("receipt: precision {p:.3} recall {r:.3} F1 {f1:.3}");
    assert!(r >= 0.85 && f1 >= 0.80, "recall {r:.3} F1 {f1:.3}:\n{text}");
    for want in ["Greenville", "Woodruff", "$39.59", "APPROVED", "Debit"] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let fields = extract::layout_fields(&out.pages[0]);
    let get = |k: &str| fields.iter().find(|f| f.key.eq_ignore_ascii_case(k)).map(|f| f.value.as_str());
    assert_eq!(get("Total"), Some("$39.59"), "{fields:?}");
    assert_eq!(get("Subtotal"), Some("$39.59"), "{fields:?}");
}

/// A PDF of image-only pages, one image each (JPEG when `jpeg`, else Flate RGB).
pub(crate) fn image_pdf(images: &[image::RgbImage], jpeg: bool) -> Vec<u8> {
    use pdf_extract::{Object, Stream};
    let streams = images
        .iter()
        .map(|img| {
            let (w, h) = img.dimensions();
            let d = image_dict(w, h, "DeviceRGB", 8);
            if jpeg {
                let mut buf = std::io::Cursor::new(Vec::new());
                img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
                let mut d = d;
                d.set("Filter", Object::Name(b"DCTDecode".to_vec()));
                Stream::new(d, buf.into_inner())
            } else {
                let mut s = Stream::new(d, img.as_raw().clone());
                s.compress().unwrap();
                s
            }
        })
        .collect::<Vec<_>>();
    pdf_of_images(|_| streams)
}

/// An image XObject's dictionary.
fn image_dict(w: u32, h: u32, colour_space: &str, bits: i64) -> pdf_extract::Dictionary {
    use pdf_extract::{Dictionary, Object};
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"XObject".to_vec()));
    d.set("Subtype", Object::Name(b"Image".to_vec()));
    d.set("Width", w as i64);
    d.set("Height", h as i64);
    d.set("ColorSpace", Object::Name(colour_space.as_bytes().to_vec()));
    d.set("BitsPerComponent", bits);
    d
}

/// A PDF with one page per image stream `streams` gives (it may add other objects to the
/// document first), each drawing its image over the whole page.
fn pdf_of_images(streams: impl FnOnce(&mut pdf_extract::Document) -> Vec<pdf_extract::Stream>) -> Vec<u8> {
    use pdf_extract::{Dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let streams = streams(&mut doc);
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for stream in streams {
        let (w, h) = (stream.dict.get(b"Width").unwrap().as_i64().unwrap(), stream.dict.get(b"Height").unwrap().as_i64().unwrap());
        let img_id = doc.add_object(stream);
        let content = doc.add_object(Stream::new(Dictionary::new(), format!("q {w} 0 0 {h} 0 0 cm /Im0 Do Q").into_bytes()));
        let mut xobj = Dictionary::new();
        xobj.set("Im0", Object::Reference(img_id));
        let mut res = Dictionary::new();
        res.set("XObject", Object::Dictionary(xobj));
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(pages_id));
        page.set("MediaBox", Object::Array(vec![0.into(), 0.into(), w.into(), h.into()]));
        page.set("Contents", Object::Reference(content));
        page.set("Resources", Object::Dictionary(res));
        kids.push(Object::Reference(doc.add_object(page)));
    }
    let mut pages = Dictionary::new();
    pages.set("Type", Object::Name(b"Pages".to_vec()));
    pages.set("Count", kids.len() as i64);
    pages.set("Kids", Object::Array(kids));
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let mut catalog = Dictionary::new();
    catalog.set("Type", Object::Name(b"Catalog".to_vec()));
    catalog.set("Pages", Object::Reference(pages_id));
    let catalog_id = doc.add_object(catalog);
    doc.trailer.set("Root", Object::Reference(catalog_id));
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

#[test]
fn scanned_pdfs_are_read_from_their_images() {
    let Some(path) = shared("llamafarm-examples/ocr_and_document/receipt.png") else { return };
    let receipt = image::open(&path).unwrap().to_rgb8();
    for jpeg in [true, false] {
        let pdf = image_pdf(std::slice::from_ref(&receipt), jpeg);
        let pages = load_pages(&pdf, "scan.pdf", 0).unwrap();
        assert!(matches!(&pages[0].content, PageContent::Image(i) if i.dimensions() == receipt.dimensions()), "jpeg {jpeg}");
        let (out, errors) = vision().ocr_pages(&pages, &OcrOptions::default()).unwrap();
        assert!(errors.is_empty() && out.pages[0].text.contains("$39.59"), "jpeg {jpeg}: {:?}", out.pages[0].text);
    }
    // The edge-case PDFs whose pages are only images (photos, 16x16 test images in
    // Flate, LZW, ASCII85, CCITT G4): every page decodes to an image.
    let Some(dir) = shared("docs/pdf-edge-cases") else { return };
    for name in ["pypdf-cmyk-image.pdf", "pypdf-imagemagick-ASCII85Decode.pdf", "pypdf-imagemagick-CCITTFaxDecode.pdf", "pypdf-imagemagick-lzw.pdf"] {
        let pages = load_pages(&std::fs::read(dir.join(name)).unwrap(), name, 0).unwrap();
        assert!(pages.iter().all(|p| matches!(p.content, PageContent::Image(_))), "{name}: {:?}", pages.iter().map(|p| &p.content).collect::<Vec<_>>());
    }
    // A file whose cross-reference table lopdf cannot read is a clear 422, not a crash.
    let e = load_pages(&std::fs::read(dir.join("pypdf-grayscale-image.pdf")).unwrap(), "gray.pdf", 0).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Invalid, "{e}");
    // Six pages of 16x16 images in Flate, LZW, RunLength, ...: every page reads, as its
    // text layer (with the image decoded beside it) or as its image.
    let pages = load_pages(&std::fs::read(dir.join("pypdf-imagemagick-images.pdf")).unwrap(), "images.pdf", 0).unwrap();
    let decoded = pages.iter().filter(|p| p.image.is_some() || matches!(p.content, PageContent::Image(_))).count();
    assert!(decoded == pages.len(), "{decoded} of {} pages' images decoded: {:?}", pages.len(), pages.iter().map(|p| &p.content).collect::<Vec<_>>());
}

/// A scanned strip of the receipt (`tests/fixtures/scan-crop.png`, 600 x 260 gray) and the
/// same pixels as lossless JPEG 2000 (`scan-crop.jp2`, written by OpenJPEG's `opj_compress`
/// 2.5). In a PDF as JPEG 2000 (a JP2 file and its bare codestream) and as JBIG2 (the
/// strip thresholded, coded by this test as an MMR generic region; with no `JBIG2Globals`
/// and with an empty one), each page decodes to exactly its
/// pixels and reads as the receipt's total; a corrupt JPEG 2000 or cut JBIG2 page fails
/// with a reason while the good pages still read.
#[test]
fn jbig2_and_jpeg2000_scans_are_read() {
    use pdf_extract::{Object, Stream};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let gray = image::open(fixtures.join("scan-crop.png")).unwrap().to_luma8();
    let (w, h) = gray.dimensions();
    let jp2 = std::fs::read(fixtures.join("scan-crop.jp2")).unwrap();
    let at = jp2.windows(4).position(|b| b == b"jp2c").unwrap() + 4;
    let codestream = jp2[at..].to_vec();
    let jpx = |bytes: Vec<u8>| {
        let mut d = image_dict(w, h, "DeviceGray", 8);
        d.set("Filter", Object::Name(b"JPXDecode".to_vec()));
        Stream::new(d, bytes)
    };
    let bilevel: Vec<bool> = gray.pixels().map(|p| p.0[0] < 128).collect();
    let jbig2 = |decode_inverted: bool, globals: Option<pdf_extract::ObjectId>, cut: Option<usize>| {
        let mut d = image_dict(w, h, "DeviceGray", 1);
        d.set("Filter", Object::Name(b"JBIG2Decode".to_vec()));
        if decode_inverted {
            d.set("Decode", Object::Array(vec![1.into(), 0.into()]));
        }
        if let Some(g) = globals {
            let mut parms = pdf_extract::Dictionary::new();
            parms.set("JBIG2Globals", Object::Reference(g));
            d.set("DecodeParms", Object::Dictionary(parms));
        }
        let mut data = jbig2_mmr_page(&bilevel, w, h);
        data.truncate(cut.unwrap_or(data.len()));
        Stream::new(d, data)
    };
    let pdf = pdf_of_images(|doc| {
        // An empty globals stream: no shared dictionaries, read and used.
        let globals = doc.add_object(Stream::new(pdf_extract::Dictionary::new(), Vec::new()));
        vec![
            jpx(jp2.clone()),
            jpx(codestream),
            jbig2(false, None, None),
            jbig2(true, None, None),
            jbig2(false, Some(globals), None),
            jpx(b"\xFF\x4F\xFF\x51\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec()),
            // Cut inside the page information segment (a cut later in the region decodes,
            // leniently, as much of the page as is there).
            jbig2(false, None, Some(20)),
        ]
    });
    let pages = load_pages(&pdf, "scans.pdf", 0).unwrap();
    assert_eq!(pages.len(), 7);
    let image_of = |i: usize| match &pages[i].content {
        PageContent::Image(img) => img.clone(),
        other => panic!("page {i}: {other:?}"),
    };
    let want_gray = image::DynamicImage::ImageLuma8(gray.clone()).to_rgb8();
    assert!(image_of(0) == want_gray, "JP2 file: the lossless pixels");
    assert!(image_of(1) == want_gray, "bare codestream: the same pixels");
    let bw = |black: u8| image::RgbImage::from_fn(w, h, |x, y| image::Rgb([if bilevel[(y * w + x) as usize] { black } else { 255 - black }; 3]));
    assert!(image_of(2) == bw(0), "JBIG2: black where the strip is dark");
    assert!(image_of(3) == bw(255), "JBIG2 with Decode [1 0]: inverted");
    assert!(image_of(4) == bw(0), "JBIG2 with a globals stream");
    for bad in [5, 6] {
        assert!(
            matches!(&pages[bad].content, PageContent::Failed(reason) if reason.contains("JPEG 2000") || reason.contains("JBIG2")),
            "page {bad}: {:?}",
            pages[bad].content
        );
    }
    if !crate::ModelCache::from_env().is_available(PPOCR_MODEL) {
        eprintln!("skipped the OCR half: {PPOCR_MODEL} is not in the model cache (run scripts/fetch-models.sh)");
        return;
    }
    let (out, errors) = vision().ocr_pages(&pages[..5], &OcrOptions::default()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    for (i, page) in out.pages.iter().enumerate() {
        assert!(page.text.contains("$39.59") && page.text.contains("Debit"), "page {i}: {}", page.text);
    }
}

/// One JBIG2 segment header (7.2: number, type, no referred-to segments, page
/// association, data length) followed by its data.
fn jbig2_segment(number: u32, kind: u8, page: u8, data: &[u8]) -> Vec<u8> {
    let mut s = number.to_be_bytes().to_vec();
    s.extend([kind, 0, page]);
    s.extend((data.len() as u32).to_be_bytes());
    s.extend_from_slice(data);
    s
}

/// A JBIG2 page in PDF's embedded organisation: a page information segment, then an
/// immediate lossless generic region coded with MMR (T.6, written by the `fax` crate's
/// G4 encoder), `true` being black.
fn jbig2_mmr_page(black: &[bool], w: u32, h: u32) -> Vec<u8> {
    let mut info = Vec::new();
    for v in [w, h, 0, 0] {
        info.extend(v.to_be_bytes());
    }
    info.extend([1, 0, 0]); // eventually lossless; no striping
    let mut enc = fax::encoder::Encoder::new(fax::VecWriter::new());
    for row in black.chunks(w as usize) {
        enc.encode_line(row.iter().map(|&b| if b { fax::Color::Black } else { fax::Color::White }), w as u16).unwrap();
    }
    let mmr = enc.finish().unwrap().finish();
    let mut region = Vec::new();
    for v in [w, h, 0, 0] {
        region.extend(v.to_be_bytes());
    }
    region.push(0); // combination operator OR
    region.push(1); // MMR
    region.extend(mmr);
    let mut out = jbig2_segment(0, 48, 1, &info);
    out.extend(jbig2_segment(1, 39, 1, &region));
    out
}

#[test]
fn unsupported_languages_are_refused() {
    if !crate::ModelCache::from_env().is_available(PPOCR_MODEL) {
        eprintln!("skipped: {PPOCR_MODEL} is not in the model cache (run scripts/fetch-models.sh)");
        return;
    }
    let opts = OcrOptions { languages: vec!["ru".into()], ..Default::default() };
    let e = vision().engine_for(&opts).err().unwrap();
    assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    assert!(e.to_string().contains("'ru' cannot be read by PP-OCRv6_small"), "{e}");
    let ok = OcrOptions { languages: vec!["en".into(), "fr".into(), "zh".into()], ..Default::default() };
    assert!(vision().engine_for(&ok).is_ok());
}

/// ocrs's engine on tiny models in its layout: dark bars are text, and read as 'A'.
#[test]
fn ocrs_engine_runs_detection_layout_and_recognition() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ocrs-tiny");
    let engine = ocrs_engine::Ocrs::load(&dir.join("text-detection.onnx"), &dir.join("text-recognition.onnx")).unwrap();
    let mut img = image::RgbImage::from_pixel(192, 96, image::Rgb([255; 3]));
    for (y0, x0, x1) in [(20u32, 30u32, 110u32), (60, 30, 150)] {
        for y in y0..y0 + 14 {
            for x in x0..x1 {
                img.put_pixel(x, y, image::Rgb([0; 3]));
            }
        }
    }
    let lines = engine.recognize(&img).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].bbox[1] < lines[1].bbox[1], "reading order: {lines:?}");
    for l in &lines {
        assert!(!l.text.is_empty() && l.text.chars().all(|c| c == 'A'), "{l:?}");
        assert!(l.confidence > 0.5, "{l:?}");
    }
    // The store picks the engine up by name.
    let v = Vision::new(crate::ModelCache::new("/nonexistent"));
    v.install(EngineChoice::Ocrs, std::sync::Arc::new(engine));
    let (out, _) =
        v.ocr_pages(&[Page { index: 0, content: PageContent::Image(img), image: None }], &OcrOptions { model: Some("ocrs".into()), ..Default::default() }).unwrap();
    assert_eq!((out.engine.as_str(), out.pages[0].lines.len()), ("ocrs", 2));
    // Without its models the engine is a 503 that says how to get them.
    let e = Vision::new(crate::ModelCache::new("/nonexistent")).engine(EngineChoice::Ocrs).err().unwrap();
    assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
}

/// Tesseract (the `ocr-tesseract` feature) through the same calls as the other engines:
/// the receipt strip fixture, the ocrs golden images when the shared data is present,
/// its languages checked against the data installed, and several pages at once from
/// threads sharing the pooled instances.
#[cfg(feature = "ocr-tesseract")]
#[test]
fn tesseract_reads_pages_in_the_languages_installed() {
    let v = Vision::new(crate::ModelCache::new("/nonexistent"));
    let opts = OcrOptions { model: Some("tesseract".into()), ..Default::default() };
    let strip = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan-crop.png")).unwrap();
    let (out, errors) = v.ocr_bytes(&strip, "scan-crop.png", &opts).unwrap();
    assert!(errors.is_empty());
    assert_eq!(out.engine, "tesseract");
    let page = &out.pages[0];
    assert!(page.text.contains("Card type Debit") && page.text.contains("62845289260246240685C"), "{}", page.text);
    assert!(page.confidence > 0.5 && page.lines.iter().all(|l| l.bbox[0] < l.bbox[2] && l.bbox[3] <= page.height as f32), "{page:?}");

    if let Some(dir) = shared("ocr/ocrs") {
        for name in ["polar-bears", "why-rust"] {
            let (out, _) = v.ocr_bytes(&std::fs::read(dir.join(format!("{name}.png"))).unwrap(), name, &opts).unwrap();
            let truth = std::fs::read_to_string(dir.join(format!("{name}.expected.txt"))).unwrap();
            let (p, r, f1) = word_f1(&out.pages[0].text, &truth);
            eprintln!("tesseract {name}: precision {p:.3} recall {r:.3} F1 {f1:.3}");
            assert!(f1 >= 0.85, "{name}: F1 {f1:.3}\n{}", out.pages[0].text);
        }
    }

    // English is installed; a language whose data is not is a 422 naming the package.
    assert!(v.engine_for(&OcrOptions { languages: vec!["en".into()], ..opts.clone() }).is_ok());
    let missing = ["yi", "am", "lo", "si"].into_iter().find(|l| !v.engine(EngineChoice::Tesseract).unwrap().reads_language(l));
    if let Some(l) = missing {
        let e = v.engine_for(&OcrOptions { languages: vec![l.into()], ..opts.clone() }).err().unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        assert!(e.to_string().contains("apt install tesseract-ocr-"), "{e}");
    }

    // Pages from several threads at once: each borrows its own instance.
    let engine = v.engine(EngineChoice::Tesseract).unwrap();
    let img = image::load_from_memory(&strip).unwrap().to_rgb8();
    let texts: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| rows_text(&engine.recognize(&img).unwrap()))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
}

/// An upside-down scan: the angle classifier turns each line, and the page reads in
/// its own order. Without the classifier the same page reads as noise.
#[test]
fn upside_down_pages_are_turned_by_the_angle_classifier() {
    let cache = crate::ModelCache::from_env();
    if !cache.is_available(PPOCR_MODEL) || !cache.is_available(PPOCR_CLS_MODEL) {
        eprintln!("skipped: {PPOCR_MODEL} or {PPOCR_CLS_MODEL} is not in the model cache (run scripts/fetch-models.sh)");
        return;
    }
    let strip = image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan-crop.png")).unwrap().to_rgb8();
    let turned = image::imageops::rotate180(&strip);
    let mut engine = ppocr::PpOcr::load_dir(&cache.resolve(PPOCR_MODEL).unwrap().dir)
        .unwrap()
        .with_angle_classifier(&cache.resolve(PPOCR_CLS_MODEL).unwrap().file("ch_ppocr_mobile_v2.0_cls_infer.onnx"))
        .unwrap();
    assert!(engine.has_angle_classifier());
    let upright = rows_text(&engine.recognize(&strip).unwrap());
    let read = engine.recognize(&turned).unwrap();
    let text = rows_text(&read);
    let (_, _, f1) = word_f1(&text, &upright);
    eprintln!("upside down vs upright: F1 {f1:.3}\n{text}");
    // The receipt's rows read the same; fragments of its diagonal watermark may differ.
    assert!(f1 >= 0.8, "F1 {f1:.3}:\n{text}\n--- upright:\n{upright}");
    for row in ["Total $39.59", "Card number **** **** **** 4922", "Date/time 11/20/2019 11:09 AM", "Reference # 62845289260246240685C"] {
        assert!(text.contains(row) && upright.contains(row), "{row}:\n{text}\n--- upright:\n{upright}");
    }
    // Reading order: the rows in the upright order.
    let at = |t: &str, row: &str| t.find(row).unwrap();
    assert!(at(&text, "Total") < at(&text, "Card number") && at(&text, "Card number") < at(&text, "Reference #"), "{text}");
    // Boxes stay in the turned page's pixels: the top row of the receipt is at its bottom.
    let total = read.iter().find(|l| l.text.contains("Total")).unwrap();
    let up_total = engine.recognize(&strip).unwrap().into_iter().find(|l| l.text.contains("Total")).unwrap();
    assert!((total.bbox[1] - (turned.height() as f32 - up_total.bbox[3])).abs() < 8.0, "{total:?} vs {up_total:?}");

    engine.params.angle_cls = false;
    let (_, _, f1_off) = word_f1(&rows_text(&engine.recognize(&turned).unwrap()), &upright);
    assert!(f1_off < 0.5, "without the classifier: F1 {f1_off:.3}");
    // The default engine has it attached.
    let (out, _) = vision().ocr_pages(&[Page { index: 0, content: PageContent::Image(turned), image: None }], &OcrOptions::default()).unwrap();
    assert!(out.pages[0].text.contains("39.59"), "{}", out.pages[0].text);
}
