//! The Decree 30/2020 appearances as poppler renders and reads them: each test builds a small
//! PDF, draws an appearance, writes its widgets into an (unsigned) signature field, then checks
//! the page's pixels (`pdftoppm`), the font (`pdffonts`) and the text (`pdftotext`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kyso_pdf::appearance::{build, Kind, Layout, Placement, Request, Widget};
use kyso_pdf::Error;
use lopdf::{dictionary, Document, Object, Stream};
use time::macros::datetime;

const A4: [f32; 4] = [0.0, 0.0, 595.276, 841.89];
/// The rendering resolution, pixels per inch.
const DPI: f32 = 50.0;

/// A document of `pages` blank pages, all with `media` (and `extra` entries such as /Rotate).
fn blank(pages: usize, media: [f32; 4], extra: lopdf::Dictionary) -> Document {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for _ in 0..pages {
        let contents = doc.add_object(Stream::new(dictionary! {}, Vec::new()));
        let mut page = dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => media.iter().map(|&v| Object::Real(v)).collect::<Vec<_>>(),
            "Contents" => contents,
            "Resources" => dictionary! {},
        };
        for (k, v) in extra.iter() {
            page.set(k.clone(), v.clone());
        }
        kids.push(doc.add_object(page).into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        dictionary! {"Type" => "Pages", "Kids" => kids, "Count" => count}.into(),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog);
    doc
}

fn request(kind: Kind) -> Request {
    Request {
        kind,
        signer: "Nguyễn Văn An".into(),
        organisation: "Sở Nội vụ tỉnh Hà Giang".into(),
        time: datetime!(2019-03-12 10:05:07 +07:00),
        doc_number: None,
        issued_date: None,
        copy_kind: None,
        comment: None,
        signature_image: None,
        seal_image: None,
        layout: Layout::default(),
    }
}

/// Draws `req` as the signing code does: the new objects continue `doc`'s numbering.
fn draw(doc: &mut Document, req: &Request) -> Result<Vec<Widget>, Error> {
    let mut new = Document::with_version("1.7");
    new.max_id = doc.max_id;
    let widgets = build(doc, &mut new, req)?;
    assert!(
        new.objects.keys().all(|id| id.0 > doc.max_id),
        "objects renumbered"
    );
    doc.max_id = new.max_id;
    doc.objects.extend(new.objects);
    Ok(widgets)
}

/// Puts `widgets` in one unsigned signature field (one field per call), as `Widget` says:
/// the field's kids, without `/Parent`.
fn add_field(doc: &mut Document, name: &str, widgets: &[Widget]) {
    let field = doc.new_object_id();
    let mut kids = Vec::new();
    for w in widgets {
        let annot = doc.add_object(dictionary! {
            "Type" => "Annot",
            "Subtype" => "Widget",
            "Rect" => w.rect.iter().map(|&v| Object::Real(v)).collect::<Vec<_>>(),
            "P" => w.page,
            "F" => 4,
            "AP" => dictionary! {"N" => w.normal},
        });
        kids.push(Object::Reference(annot));
        let page = doc.get_object_mut(w.page).unwrap().as_dict_mut().unwrap();
        match page.get_mut(b"Annots") {
            Ok(Object::Array(a)) => a.push(annot.into()),
            _ => page.set("Annots", vec![annot.into()]),
        }
    }
    doc.objects.insert(
        field,
        dictionary! {"FT" => "Sig", "T" => Object::string_literal(name), "Kids" => kids}.into(),
    );
    let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    let catalog = doc.get_object_mut(root).unwrap().as_dict_mut().unwrap();
    if !catalog.has(b"AcroForm") {
        catalog.set("AcroForm", dictionary! {"Fields" => Vec::<Object>::new()});
    }
    let form = catalog.get_mut(b"AcroForm").unwrap().as_dict_mut().unwrap();
    form.get_mut(b"Fields")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(field.into());
}

fn save(doc: &mut Document, dir: &Path) -> PathBuf {
    let path = dir.join("drawn.pdf");
    doc.save(&path).unwrap();
    path
}

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} is needed (Debian: poppler-utils): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A page rendered at [`DPI`]: RGB pixels, rows from the top.
struct Render {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn render(pdf: &Path, page: usize) -> Render {
    let out = pdf.with_file_name(format!("page{page}"));
    let p = page.to_string();
    tool(
        "pdftoppm",
        &[
            "-r",
            "50",
            "-png",
            "-singlefile",
            "-f",
            &p,
            "-l",
            &p,
            pdf.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let file = std::fs::File::open(out.with_extension("png")).unwrap();
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    Render {
        width: info.width as usize,
        height: info.height as usize,
        rgb: buf[..info.buffer_size()].to_vec(),
    }
}

fn red(p: [u8; 3]) -> bool {
    p[0] > 150 && p[1] < 100 && p[2] < 100
}
fn blue(p: [u8; 3]) -> bool {
    p[2] > 150 && p[0] < 100 && p[1] < 100
}
fn dark(p: [u8; 3]) -> bool {
    p.iter().all(|&c| c < 110)
}

/// A box on the rendered page in millimetres from its lower left: x, y, width, height.
type Mm = [f32; 4];

impl Render {
    /// How many pixels match `what` inside (`inside` true) or outside the box `b`.
    fn count(&self, what: fn([u8; 3]) -> bool, b: Mm, inside: bool) -> usize {
        let px = |mm: f32| mm / 25.4 * DPI;
        let (x0, x1) = (px(b[0]), px(b[0] + b[2]));
        let (y0, y1) = (
            self.height as f32 - px(b[1] + b[3]),
            self.height as f32 - px(b[1]),
        );
        let mut n = 0;
        for y in 0..self.height {
            for x in 0..self.width {
                let i = (y * self.width + x) * 3;
                let p = [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]];
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let within = fx >= x0 && fx <= x1 && fy >= y0 && fy <= y1;
                if within == inside && what(p) {
                    n += 1;
                }
            }
        }
        n
    }
}

fn encode_rgba(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(png::ColorType::Rgba);
    e.set_depth(png::BitDepth::Eight);
    let mut wr = e.write_header().unwrap();
    wr.write_image_data(rgba).unwrap();
    wr.finish().unwrap();
    out
}

/// A red ring on a transparent square, as a seal picture is.
fn red_ring() -> Vec<u8> {
    let side = 200u32;
    let mut rgba = Vec::new();
    for y in 0..side {
        for x in 0..side {
            let r = ((x as f32 - 99.5).powi(2) + (y as f32 - 99.5).powi(2)).sqrt();
            let on = (70.0..=98.0).contains(&r);
            rgba.extend_from_slice(&[220, 0, 0, if on { 255 } else { 0 }]);
        }
    }
    encode_rgba(side, side, &rgba)
}

/// A blue scribble across a transparent 300 × 120 picture.
fn blue_scribble() -> Vec<u8> {
    let (w, h) = (300u32, 120u32);
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let centre = 60.0 + 40.0 * (x as f32 / 20.0).sin();
            let on = (y as f32 - centre).abs() < 8.0;
            rgba.extend_from_slice(&[0, 0, 230, if on { 255 } else { 0 }]);
        }
    }
    encode_rgba(w, h, &rgba)
}

fn mm_rect(w: &Widget) -> Mm {
    let k = 25.4 / 72.0;
    [
        w.rect[0] * k,
        w.rect[1] * k,
        (w.rect[2] - w.rect[0]) * k,
        (w.rect[3] - w.rect[1]) * k,
    ]
}

fn close(a: Mm, b: Mm) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.1)
}

#[test]
fn leader_signature_then_seal_at_the_default_places() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = blank(1, A4, dictionary! {});

    let mut approved = request(Kind::Approved);
    approved.signature_image = Some(blue_scribble());
    let sig = draw(&mut doc, &approved).unwrap();
    add_field(&mut doc, "Leader", &sig);
    // The documented default signature box of an A4 page: 60 × 25 mm, 120 mm from the left,
    // 40 mm up.
    let signature_box = [120.0, 40.0, 60.0, 25.0];
    assert_eq!(sig.len(), 1);
    assert!(
        close(mm_rect(&sig[0]), signature_box),
        "{:?}",
        mm_rect(&sig[0])
    );

    let mut issued = request(Kind::Issued);
    issued.seal_image = Some(red_ring());
    issued.doc_number = Some("123/BCY-CTSBMTT".into());
    issued.issued_date = Some("2019-03-12T12:00:00+07:00".into());
    let seal = draw(&mut doc, &issued).unwrap();
    add_field(&mut doc, "Seal", &seal);
    assert_eq!(seal.len(), 3, "seal, number and date");
    // 36 mm across, its right edge a third into the signature box, centred on it vertically.
    let seal_box = [104.0, 34.5, 36.0, 36.0];
    assert!(
        close(mm_rect(&seal[0]), seal_box),
        "{:?}",
        mm_rect(&seal[0])
    );

    let pdf = save(&mut doc, dir.path());
    let page = render(&pdf, 1);
    let third = [120.0, 40.0, 20.0, 25.0];
    let rest = [140.0, 40.0, 40.0, 25.0];
    assert!(page.count(red, seal_box, true) > 300, "the seal is drawn");
    assert!(
        page.count(red, third, true) > 30,
        "the seal covers the signature's left third"
    );
    assert_eq!(page.count(red, rest, true), 0, "and no more of it");
    assert_eq!(
        page.count(red, seal_box, false),
        0,
        "no red outside the seal"
    );
    assert!(
        page.count(blue, signature_box, true) > 200,
        "the signature is drawn"
    );
    assert!(page.count(blue, rest, true) > 100, "beside the seal too");
    assert_eq!(
        page.count(blue, signature_box, false),
        0,
        "no blue outside the box"
    );
    // The number and the date: dark text on the top band, nothing dark elsewhere.
    let band = [30.0, 297.0 - 55.0, 160.0, 15.0];
    assert!(page.count(dark, band, true) > 50, "number and date written");
    assert_eq!(page.count(dark, band, false), 0);

    let text = tool("pdftotext", &[pdf.to_str().unwrap(), "-"]);
    assert!(text.contains("123/BCY-CTSBMTT"), "{text}");
    assert!(text.contains("ngày 12 tháng 3 năm 2019"), "{text}");
    tool("qpdf", &["--check", pdf.to_str().unwrap()]);
}

#[test]
fn copy_note_top_right_in_an_embedded_subset_font() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = blank(2, A4, dictionary! {});
    let widgets = draw(&mut doc, &request(Kind::Copy)).unwrap();
    add_field(&mut doc, "Copy", &widgets);
    let pdf = save(&mut doc, dir.path());

    let page = render(&pdf, 1);
    let top_right = [105.0, 297.0 - 30.0, 105.0, 30.0];
    assert!(
        page.count(dark, top_right, true) > 100,
        "the note is written"
    );
    assert_eq!(page.count(dark, top_right, false), 0, "and nothing else");
    assert_eq!(
        render(&pdf, 2).count(dark, [0.0, 0.0, 210.0, 297.0], true),
        0,
        "page 2 is blank"
    );

    let fonts = tool("pdffonts", &[pdf.to_str().unwrap()]);
    let line = fonts
        .lines()
        .find(|l| l.contains("+LiberationSerif"))
        .unwrap_or_else(|| panic!("{fonts}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[1..5],
        ["CID", "TrueType", "Identity-H", "yes"],
        "{line}"
    );
    assert_eq!(cols[5..7], ["yes", "yes"], "subset and ToUnicode: {line}");

    let text = tool("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    for expected in [
        "BẢN SAO ĐIỆN TỬ",
        "Sở Nội vụ tỉnh Hà Giang",
        "2019-03-12T10:05:07+07:00",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}

#[test]
fn landscape_page_turned_and_offset_keeps_the_note_top_right() {
    let dir = tempfile::tempdir().unwrap();
    // An A4 page drawn portrait in user space, shown landscape by /Rotate 90, its origin
    // moved away from 0 0.
    let media = [100.0, 50.0, 695.276, 891.89];
    let mut doc = blank(1, media, dictionary! {"Rotate" => 90});
    let mut req = request(Kind::Copy);
    req.copy_kind = Some("SAO Y".into());
    let widgets = draw(&mut doc, &req).unwrap();
    add_field(&mut doc, "Copy", &widgets);
    let pdf = save(&mut doc, dir.path());
    let page = render(&pdf, 1);
    assert!(page.width > page.height, "rendered landscape");
    let top_right = [297.0 - 105.0, 210.0 - 30.0, 105.0, 30.0];
    assert!(page.count(dark, top_right, true) > 40);
    assert_eq!(page.count(dark, top_right, false), 0);
    let text = tool("pdftotext", &[pdf.to_str().unwrap(), "-"]);
    assert!(
        text.contains("SAO Y\n"),
        "written upright, one line: {text}"
    );
}

#[test]
fn without_pictures_who_signed_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = blank(3, A4, dictionary! {});
    let approved = draw(&mut doc, &request(Kind::Approved)).unwrap();
    add_field(&mut doc, "Leader", &approved);
    let issued = draw(&mut doc, &request(Kind::Issued)).unwrap();
    assert_eq!(issued.len(), 2, "the seal's text and the date, no number");
    add_field(&mut doc, "Seal", &issued);
    let pdf = save(&mut doc, dir.path());
    let last = render(&pdf, 3);
    // The signature box's text, and the seal's under it rather than over it.
    let lower_right = [100.0, 0.0, 90.0, 70.0];
    assert!(last.count(dark, lower_right, true) > 100);
    assert_eq!(last.count(dark, lower_right, false), 0);
    let text = tool("pdftotext", &[pdf.to_str().unwrap(), "-"]);
    for expected in [
        "Ký bởi: Nguyễn Văn An",
        "Sở Nội vụ",
        "2019-03-12T10:05:07+07:00",
        "ngày 12 tháng 3 năm 2019",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}

#[test]
fn received_stamp_comment_attachment_and_plain() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = blank(2, A4, dictionary! {});
    let mut income = request(Kind::Income);
    income.doc_number = Some("45".into());
    let stamp = draw(&mut doc, &income).unwrap();
    add_field(&mut doc, "Income", &stamp);
    let mut comment = request(Kind::Comment);
    comment.comment = Some("Đồng ý với nội dung tờ trình; đề nghị Văn phòng sở hoàn thiện hồ sơ trình Ủy ban nhân dân tỉnh trước ngày 20 tháng 3.".into());
    let said = draw(&mut doc, &comment).unwrap();
    add_field(&mut doc, "Comment", &said);
    let mut appendix = request(Kind::Appendix);
    appendix.doc_number = Some("123/BCY-CTSBMTT".into());
    let note = draw(&mut doc, &appendix).unwrap();
    add_field(&mut doc, "Appendix", &note);
    let mut plain = request(Kind::Plain);
    plain.layout.signature = Some(Placement {
        page: 1,
        x_mm: 20.0,
        y_mm: 20.0,
        width_mm: 70.0,
        height_mm: 20.0,
    });
    let signed = draw(&mut doc, &plain).unwrap();
    add_field(&mut doc, "Plain", &signed);
    assert!(close(mm_rect(&signed[0]), [20.0, 20.0, 70.0, 20.0]));
    let pdf = save(&mut doc, dir.path());

    let first = render(&pdf, 1);
    let stamp_box = mm_rect(&stamp[0]);
    assert!(stamp_box[1] + stamp_box[3] <= 297.0 - 59.0 && stamp_box[0] >= 29.0);
    assert!(first.count(red, stamp_box, true) > 100, "a red stamp");
    assert_eq!(first.count(red, stamp_box, false), 0);
    let text = tool("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    for expected in [
        "ĐẾN",
        "Số: 45",
        "Ngày: 12/03/2019 10:05",
        "Ý kiến: Đồng ý",
        "Ủy ban nhân dân",
        "123/BCY-CTSBMTT",
        "Ký bởi: Nguyễn Văn An",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    // The long comment grew its box upwards from the signature box's bottom.
    let c = mm_rect(&said[0]);
    assert!((c[1] - 40.0).abs() < 0.1 && c[3] > 25.0, "{c:?}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let mut doc = blank(1, A4, dictionary! {});
    let mut req = request(Kind::Approved);
    req.signature_image = Some(b"\x89PNG\r\n\x1a\nbroken".to_vec());
    let e = draw(&mut doc, &req).unwrap_err();
    assert!(
        matches!(e, Error::Appearance(ref m) if m.contains("signature image")),
        "{e}"
    );

    let mut req = request(Kind::Copy);
    req.layout.font = Some(PathBuf::from("no-such-font.ttf"));
    let e = draw(&mut doc, &req).unwrap_err();
    assert!(
        matches!(e, Error::Appearance(ref m) if m.contains("no-such-font.ttf")),
        "{e}"
    );

    let mut req = request(Kind::Plain);
    req.layout.signature = Some(Placement {
        page: -1,
        x_mm: 200.0,
        y_mm: 10.0,
        width_mm: 60.0,
        height_mm: 20.0,
    });
    let e = draw(&mut doc, &req).unwrap_err();
    assert!(e.to_string().contains("outside the page"), "{e}");

    req.layout.signature = Some(Placement {
        page: 4,
        x_mm: 10.0,
        y_mm: 10.0,
        width_mm: 0.0,
        height_mm: 0.0,
    });
    assert!(draw(&mut doc, &req)
        .unwrap_err()
        .to_string()
        .contains("page 4 does not exist"));

    let mut req = request(Kind::Issued);
    req.issued_date = Some("mười hai".into());
    assert!(draw(&mut doc, &req)
        .unwrap_err()
        .to_string()
        .contains("not a date"));
    assert!(draw(&mut doc, &request(Kind::None)).unwrap().is_empty());
}

fn venv_bin(name: &str) -> PathBuf {
    let bin = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/venv/bin"
    ))
    .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-debian",
        bin.display()
    );
    bin
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// Signs the existing field `Seal` of `input`. pyHanko signs a field of one widget only and
/// draws its own appearance, so both are switched off: kyso's widgets are already drawn.
const PYHANKO_SIGN_FIELD: &str = r#"
import sys
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.signers import cms_embedder
cms_embedder.get_single_field_annot = lambda f: f['/Kids'][0].get_object()
cms_embedder.SigAppearanceSetup.apply = lambda self, annot, writer: None
key, cert, src, dst = sys.argv[1:]
with open(src, 'rb') as f, open(dst, 'wb') as out:
    meta = signers.PdfSignatureMetadata(field_name='Seal', subfilter=SigSeedSubFilter.PADES)
    signers.sign_pdf(IncrementalPdfFileWriter(f), meta, signer=signers.SimpleSigner.load(key, cert),
                     output=out, existing_fields_only=True)
"#;

/// The seal, the number and the date as three widgets of one field on two pages, signed after
/// the leader's signature: pyHanko and poppler both validate both signatures.
#[test]
fn issued_widgets_validate_after_the_leaders_signature() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    blank(2, A4, dictionary! {}).save(p("base.pdf")).unwrap();
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=Nguyen Van An/O=So Noi vu",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("cert.pem"),
        ]));
    // The leader signs first, in the signature box of the last page.
    run(Command::new(venv_bin("pyhanko"))
        .args([
            "sign",
            "addsig",
            "--field",
            "2/340,113,510,184/Leader",
            "pemder",
        ])
        .args([
            "--key",
            &p("key.pem"),
            "--cert",
            &p("cert.pem"),
            "--no-pass",
            &p("base.pdf"),
            &p("leader.pdf"),
        ]));

    // The clerk's revision: kyso's drawings in an empty signature field.
    let mut inc = lopdf::IncrementalDocument::load(p("leader.pdf")).unwrap();
    let mut issued = request(Kind::Issued);
    issued.seal_image = Some(red_ring());
    issued.doc_number = Some("123/BCY-CTSBMTT".into());
    let prev = inc.get_prev_documents().clone();
    let widgets = build(&prev, &mut inc.new_document, &issued).unwrap();
    let pages: Vec<_> = widgets.iter().map(|w| w.page).collect();
    assert_ne!(
        pages[0], pages[1],
        "the seal on the last page, the number on the first"
    );
    let new = &mut inc.new_document;
    let field = new.new_object_id();
    let mut kids = Vec::new();
    for w in &widgets {
        let annot = new.add_object(dictionary! {
            "Type" => "Annot",
            "Subtype" => "Widget",
            "Rect" => w.rect.iter().map(|&v| Object::Real(v)).collect::<Vec<_>>(),
            "P" => w.page,
            "F" => 4,
            "AP" => dictionary! {"N" => w.normal},
        });
        kids.push(Object::Reference(annot));
        new.objects
            .entry(w.page)
            .or_insert_with(|| prev.get_object(w.page).unwrap().clone());
        let page = new.get_object_mut(w.page).unwrap().as_dict_mut().unwrap();
        let annots = match page.get(b"Annots") {
            Ok(Object::Array(a)) => a.clone(),
            Ok(Object::Reference(r)) => prev.get_object(*r).unwrap().as_array().unwrap().clone(),
            _ => Vec::new(),
        };
        page.set("Annots", [annots, vec![annot.into()]].concat());
    }
    new.objects.insert(
        field,
        dictionary! {"FT" => "Sig", "T" => Object::string_literal("Seal"), "Kids" => kids}.into(),
    );
    let root = prev.trailer.get(b"Root").unwrap().as_reference().unwrap();
    let mut catalog = prev.get_dictionary(root).unwrap().clone();
    let mut form = match catalog.get(b"AcroForm").unwrap() {
        Object::Reference(r) => prev.get_dictionary(*r).unwrap().clone(),
        o => o.as_dict().unwrap().clone(),
    };
    form.get_mut(b"Fields")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(field.into());
    catalog.set("AcroForm", form);
    new.objects.insert(root, catalog.into());
    inc.save(p("fields.pdf")).unwrap();

    run(Command::new(venv_bin("python"))
        .args(["-c", PYHANKO_SIGN_FIELD])
        .args([
            &p("key.pem"),
            &p("cert.pem"),
            &p("fields.pdf"),
            &p("sealed.pdf"),
        ]));
    let report = run(Command::new(venv_bin("pyhanko")).args([
        "sign",
        "validate",
        "--pretty-print",
        "--trust",
        &p("cert.pem"),
        &p("sealed.pdf"),
    ]));
    assert_eq!(
        report.matches("The signature is judged VALID.").count(),
        2,
        "{report}"
    );
    assert!(!report.contains("INVALID"), "{report}");
    let poppler = run(Command::new("pdfsig").arg(p("sealed.pdf")));
    assert_eq!(
        poppler
            .matches("Signature Validation: Signature is Valid.")
            .count(),
        2,
        "{poppler}"
    );
    assert!(!poppler.contains("not signed"), "{poppler}");

    let sealed = PathBuf::from(p("sealed.pdf"));
    assert!(
        render(&sealed, 2).count(red, [104.0, 34.5, 36.0, 36.0], true) > 300,
        "the seal"
    );
    assert!(
        render(&sealed, 1).count(dark, [30.0, 297.0 - 55.0, 160.0, 15.0], true) > 50,
        "number and date"
    );
}
