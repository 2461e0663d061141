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
    use pdf_extract::{Dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for img in images {
        let (w, h) = img.dimensions();
        let mut d = Dictionary::new();
        d.set("Type", Object::Name(b"XObject".to_vec()));
        d.set("Subtype", Object::Name(b"Image".to_vec()));
        d.set("Width", w as i64);
        d.set("Height", h as i64);
        d.set("ColorSpace", Object::Name(b"DeviceRGB".to_vec()));
        d.set("BitsPerComponent", 8);
        let stream = if jpeg {
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
            d.set("Filter", Object::Name(b"DCTDecode".to_vec()));
            Stream::new(d, buf.into_inner())
        } else {
            let mut s = Stream::new(d, img.as_raw().clone());
            s.compress().unwrap();
            s
        };
        let img_id = doc.add_object(stream);
        let content = doc.add_object(Stream::new(Dictionary::new(), format!("q {w} 0 0 {h} 0 0 cm /Im0 Do Q").into_bytes()));
        let mut xobj = Dictionary::new();
        xobj.set("Im0", Object::Reference(img_id));
        let mut res = Dictionary::new();
        res.set("XObject", Object::Dictionary(xobj));
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(pages_id));
        page.set("MediaBox", Object::Array(vec![0.into(), 0.into(), (w as i64).into(), (h as i64).into()]));
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
