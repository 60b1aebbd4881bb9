//! PAdES signing judged by independent tools: pyHanko and poppler's pdfsig validate each
//! signature, qpdf checks the file's structure, openssl reads the CMS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kyso_pdf::net::{Fetch, Offline};
use kyso_pdf::sign::{sign_pdf, Options, MAX_SIZE};
use kyso_pdf::Error;
use lopdf::{dictionary, Document, Object};

fn options(fetch: &dyn Fetch) -> Options<'_> {
    Options {
        field_name: None,
        reason: Some("Ký duyệt".into()),
        location: Some("Hà Nội".into()),
        appearance: None,
        timestamp_url: None,
        fetch,
        time: time::macros::datetime!(2026-03-12 12:00:00 +07:00),
    }
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The number of "judged VALID" verdicts in pyHanko's report, asserting it succeeded.
fn pyhanko_valid(file: &Path, pki: &Pki) -> (usize, String) {
    let (ok, report) = pyhanko_validate(file, &pki.ca_pem);
    assert!(ok, "pyHanko rejects {}:\n{report}", file.display());
    assert!(!report.contains("judged INVALID"), "{report}");
    (
        report.matches("The signature is judged VALID.").count(),
        report,
    )
}

fn pdfsig_valid(file: &Path) -> (usize, String) {
    let (ok, report) = pdfsig(file);
    assert!(ok, "pdfsig fails on {}:\n{report}", file.display());
    (
        report
            .matches("Signature Validation: Signature is Valid.")
            .count(),
        report,
    )
}

fn assert_qpdf_clean(file: &Path) {
    let (ok, report) = qpdf_check(file);
    assert!(ok, "qpdf --check {}:\n{report}", file.display());
    assert!(
        report.contains("No syntax or stream encoding errors found"),
        "{report}"
    );
}

/// The signature dictionaries of `pdf`, by field name.
fn signatures(pdf: &[u8]) -> Vec<(String, lopdf::Dictionary)> {
    let doc = Document::load_mem(pdf).unwrap();
    let form = doc.catalog().unwrap().get_deref(b"AcroForm", &doc).unwrap();
    let form = form.as_dict().unwrap();
    assert_eq!(form.get(b"SigFlags").unwrap().as_i64().unwrap(), 3);
    let fields = form.get_deref(b"Fields", &doc).unwrap().as_array().unwrap();
    fields
        .iter()
        .map(|f| {
            let field = doc.get_dictionary(f.as_reference().unwrap()).unwrap();
            let name =
                String::from_utf8(field.get(b"T").unwrap().as_str().unwrap().to_vec()).unwrap();
            let sig = field
                .get_deref(b"V", &doc)
                .unwrap()
                .as_dict()
                .unwrap()
                .clone();
            (name, sig)
        })
        .collect()
}

/// openssl's reading of a signature's CMS.
fn openssl_cms_print(dir: &Path, sig: &lopdf::Dictionary) -> String {
    let der = sig.get(b"Contents").unwrap().as_str().unwrap();
    let path = save(dir, "contents.der", der);
    let (ok, text) = run(Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "der", "-in"])
        .arg(&path));
    assert!(ok, "{text}");
    text
}

fn sign_and_check(modern: bool, rsa: bool) {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let mut signer = if rsa {
        pki.rsa_signer("Nguyễn Văn A")
    } else {
        pki.ec_signer("Nguyễn Văn A")
    };
    let pdf = make_pdf(3, 0, modern);
    let signed = sign_pdf(&pdf, &mut signer, &options(&Offline)).unwrap();
    assert_eq!(
        &signed[..pdf.len()],
        &pdf[..],
        "the original bytes must stay as they were"
    );
    let update = String::from_utf8_lossy(&signed[pdf.len()..]).to_string();
    if modern {
        assert!(
            update.contains("/Type/XRef") && !update.contains("\nxref"),
            "{update}"
        );
    } else {
        assert!(
            update.contains("\nxref\n") && !update.contains("/XRef"),
            "{update}"
        );
    }
    // Only the catalog (for the new AcroForm), the AcroForm, the field, page 1 and the
    // signature dictionary are written.
    assert_eq!(
        update.matches(" obj\n").count(),
        if modern { 6 } else { 5 },
        "{update}"
    );

    let file = save(dir, "signed.pdf", &signed);
    let (valid, report) = pyhanko_valid(&file, &pki);
    assert_eq!(valid, 1, "{report}");
    assert!(
        report.contains("The signer's certificate is trusted."),
        "{report}"
    );
    assert!(
        report.contains("The signature covers the entire file."),
        "{report}"
    );
    let mechanism = if rsa {
        "'sha256_rsa'"
    } else {
        "'sha256_ecdsa'"
    };
    assert!(report.contains(mechanism), "{report}");
    let (valid, report) = pdfsig_valid(&file);
    assert_eq!(valid, 1, "{report}");
    assert!(
        report.contains("Signature Type: ETSI.CAdES.detached"),
        "{report}"
    );
    assert!(
        report.contains("Signature Field Name: Signature1"),
        "{report}"
    );
    assert_qpdf_clean(&file);

    let sigs = signatures(&signed);
    assert_eq!(sigs.len(), 1);
    let (name, sig) = &sigs[0];
    assert_eq!(name, "Signature1");
    assert_eq!(
        sig.get(b"SubFilter").unwrap().as_name().unwrap(),
        b"ETSI.CAdES.detached"
    );
    assert_eq!(
        sig.get(b"M").unwrap().as_str().unwrap(),
        b"D:20260312120000+07'00'"
    );
    let cms = openssl_cms_print(dir, sig);
    for attr in [
        "contentType",
        "messageDigest",
        "id-smime-aa-signingCertificateV2",
    ] {
        assert!(cms.contains(attr), "{attr} missing:\n{cms}");
    }
    assert!(!cms.contains("signingTime"), "{cms}");
    assert!(
        cms.contains("kyso test CA"),
        "the chain is embedded:\n{cms}"
    );
}

#[test]
fn rsa_classic_xref() {
    sign_and_check(false, true);
}

#[test]
fn ec_classic_xref() {
    sign_and_check(false, false);
}

#[test]
fn rsa_xref_stream_and_object_streams() {
    sign_and_check(true, true);
}

#[test]
fn ec_xref_stream_and_object_streams() {
    sign_and_check(true, false);
}

/// The leader signs, then the clerk seals: both signatures stay valid, the first covering
/// the revision it signed.
#[test]
fn co_signed_in_sequence() {
    for modern in [false, true] {
        let pki = Pki::new();
        let dir = pki.dir.path();
        let mut leader = pki.rsa_signer("Trần Văn Lãnh Đạo");
        let mut clerk = pki.ec_signer("Văn thư");
        let pdf = make_pdf(2, 0, modern);
        let first = sign_pdf(&pdf, &mut leader, &options(&Offline)).unwrap();
        let mut seal = options(&Offline);
        seal.reason = Some("Đóng dấu phát hành".into());
        let second = sign_pdf(&first, &mut clerk, &seal).unwrap();
        assert_eq!(&second[..first.len()], &first[..]);

        let file = save(dir, "cosigned.pdf", &second);
        let (valid, report) = pyhanko_valid(&file, &pki);
        assert_eq!(valid, 2, "{report}");
        assert!(report.contains("Field 1: Signature1") && report.contains("Field 2: Signature2"));
        assert!(
            report.contains("The signature covers the entire file."),
            "{report}"
        );
        assert!(
            report.contains("The signature does not cover the entire file."),
            "the leader's signature covers its own revision:\n{report}"
        );
        assert!(
            report.contains("compatible with the current document"),
            "{report}"
        );
        let (valid, report) = pdfsig_valid(&file);
        assert_eq!(valid, 2, "{report}");
        assert!(report.contains("Total document signed"), "{report}");
        assert!(report.contains("Not total document signed"), "{report}");
        assert_qpdf_clean(&file);

        let sigs = signatures(&second);
        let names: Vec<_> = sigs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Signature1", "Signature2"]);
        let range = |sig: &lopdf::Dictionary| {
            let r = sig.get(b"ByteRange").unwrap().as_array().unwrap();
            (r[2].as_i64().unwrap() + r[3].as_i64().unwrap()) as usize
        };
        assert_eq!(range(&sigs[0].1), first.len());
        assert_eq!(range(&sigs[1].1), second.len());
    }
}

#[test]
fn field_names() {
    let pki = Pki::new();
    let mut signer = pki.ec_signer("A");
    let pdf = make_pdf(1, 0, false);
    let mut named = options(&Offline);
    named.field_name = Some("LanhDao".into());
    let once = sign_pdf(&pdf, &mut signer, &named).unwrap();
    assert_eq!(signatures(&once)[0].0, "LanhDao");
    let err = sign_pdf(&once, &mut signer, &named).unwrap_err();
    assert!(
        err.to_string()
            .contains("already has a field named \"LanhDao\""),
        "{err}"
    );
    let twice = sign_pdf(&once, &mut signer, &options(&Offline)).unwrap();
    let names: Vec<_> = signatures(&twice).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["LanhDao", "Signature1"]);
    named.field_name = Some("a.b".into());
    assert!(sign_pdf(&pdf, &mut signer, &named).is_err());
}

/// PAdES-B-T: a timestamp from an RFC 3161 service (openssl ts behind HTTP).
#[test]
fn timestamped() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let url = tsa_server(pki.tsa_config());
    let mut signer = pki.rsa_signer("Nguyễn Văn A");
    let pdf = make_pdf(2, 0, true);
    let mut opts = options(&Http);
    opts.timestamp_url = Some(url);
    let signed = sign_pdf(&pdf, &mut signer, &opts).unwrap();
    let file = save(dir, "timestamped.pdf", &signed);
    let (valid, report) = pyhanko_valid(&file, &pki);
    assert_eq!(valid, 1, "{report}");
    assert!(report.contains("Signature timestamp"), "{report}");
    assert!(
        report.contains("The TSA certificate is trusted."),
        "{report}"
    );
    assert!(
        report.contains("The timestamp token is cryptographically sound."),
        "{report}"
    );
    let (valid, report) = pdfsig_valid(&file);
    assert_eq!(valid, 1, "{report}");
    assert_qpdf_clean(&file);
    let cms = openssl_cms_print(dir, &signatures(&signed)[0].1);
    assert!(cms.contains("id-smime-aa-timeStampToken"), "{cms}");
}

#[test]
fn a_failing_timestamp_service_fails_the_signature() {
    let pki = Pki::new();
    let mut signer = pki.ec_signer("A");
    let pdf = make_pdf(1, 0, false);
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = options(&Http);
    opts.timestamp_url = Some(format!("http://{port}/tsa"));
    let err = sign_pdf(&pdf, &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::Timestamp(_)), "{err}");

    // A service answering with something else than a timestamp.
    let config = pki.dir.path().join("broken.cnf");
    std::fs::write(&config, "[ tsa ]\ndefault_tsa = nowhere\n").unwrap();
    opts.timestamp_url = Some(tsa_server(config));
    let err = sign_pdf(&pdf, &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::Timestamp(_)), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
}

#[test]
fn bad_input() {
    let pki = Pki::new();
    let mut signer = pki.ec_signer("A");
    let opts = options(&Offline);
    let err = sign_pdf(b"Hello, this is a text file.", &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::NotPdf), "{err}");
    assert!(matches!(
        sign_pdf(b"", &mut signer, &opts),
        Err(Error::NotPdf)
    ));

    let pdf = make_pdf(3, 1000, false);
    let truncated = &pdf[..pdf.len() / 2];
    let err = sign_pdf(truncated, &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::Damaged(_)), "{err}");
    let err = sign_pdf(b"%PDF-1.7\ngarbage", &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::Damaged(_)), "{err}");

    let dir = pki.dir.path();
    let plain = save(dir, "plain.pdf", &pdf);
    let encrypted = dir.join("encrypted.pdf");
    for (user, name) in [("secret", "user password"), ("", "empty user password")] {
        let (ok, text) = run(Command::new("qpdf")
            .args(["--encrypt", user, "owner", "256", "--"])
            .arg(&plain)
            .arg(&encrypted));
        assert!(ok, "{text}");
        let err = sign_pdf(&std::fs::read(&encrypted).unwrap(), &mut signer, &opts).unwrap_err();
        assert!(matches!(err, Error::Encrypted), "{name}: {err}");
    }

    let huge = vec![b' '; MAX_SIZE as usize + 1];
    let err = sign_pdf(&huge, &mut signer, &opts).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

/// Cut or damaged anywhere, a file gives an answer, never a panic; what does sign is valid
/// for qpdf.
#[test]
fn damage_never_panics() {
    let pki = Pki::new();
    let mut signer = pki.ec_signer("A");
    let opts = options(&Offline);
    for modern in [false, true] {
        let pdf = make_pdf(2, 0, modern);
        let step = (pdf.len() / 97).max(1);
        for cut in (0..pdf.len()).step_by(step) {
            let _ = sign_pdf(&pdf[..cut], &mut signer, &opts);
            let mut flipped = pdf.clone();
            flipped[cut] ^= 0x55;
            if let Ok(signed) = sign_pdf(&flipped, &mut signer, &opts) {
                assert_eq!(&signed[..pdf.len()], &flipped[..]);
            }
        }
    }
}

/// A signer that times the token's part.
struct Timed<'a> {
    inner: &'a mut SoftSigner,
    spent: std::time::Duration,
}

impl kyso_pdf::signer::Signer for Timed<'_> {
    fn certificate(&self) -> &[u8] {
        self.inner.certificate()
    }
    fn chain(&self) -> Vec<Vec<u8>> {
        self.inner.chain()
    }
    fn key_kind(&self) -> kyso_pdf::signer::KeyKind {
        self.inner.key_kind()
    }
    fn sign_digest(
        &mut self,
        alg: kyso_pdf::signer::DigestAlg,
        digest: &[u8],
    ) -> Result<Vec<u8>, String> {
        let start = std::time::Instant::now();
        let sig = self.inner.sign_digest(alg, digest);
        self.spent += start.elapsed();
        sig
    }
}

/// A 10 MB, 100-page PDF signs within the time budget beyond the token's signature, asserted
/// in optimised builds; unoptimised builds only print the time (figures: docs/benchmarks.md).
#[test]
fn ten_megabytes_in_time() {
    let pki = Pki::new();
    let mut soft = pki.rsa_signer("A");
    for modern in [false, true] {
        let pdf = make_pdf(100, 100 * 1024, modern);
        assert!(pdf.len() > 10_000_000, "{}", pdf.len());
        let mut best = std::time::Duration::MAX;
        let mut signed = Vec::new();
        for _ in 0..3 {
            let mut timed = Timed {
                inner: &mut soft,
                spent: Default::default(),
            };
            let start = std::time::Instant::now();
            signed = sign_pdf(&pdf, &mut timed, &options(&Offline)).unwrap();
            best = best.min(start.elapsed() - timed.spent);
        }
        eprintln!(
            "signing {} bytes ({}): {} ms beyond the token",
            pdf.len(),
            if modern { "xref stream" } else { "xref table" },
            best.as_millis()
        );
        if !cfg!(debug_assertions) {
            assert!(best.as_millis() < 300, "{best:?}");
        }
        let file = save(pki.dir.path(), "big.pdf", &signed);
        assert_eq!(pdfsig_valid(&file).0, 1);
        assert!(matches!(
            Document::load_mem(&signed).unwrap().get_pages().len(),
            100
        ));
        let _ = Object::Null;
    }
}

/// Has pyHanko sign `input` into `output` with `signer`'s key, as field `field`; `docmdp`
/// certifies with that DocMDP permission level.
fn pyhanko_sign(
    pki: &Pki,
    signer: &SoftSigner,
    input: &Path,
    output: &Path,
    field: &str,
    docmdp: Option<u8>,
) {
    let dir = pki.dir.path();
    let key = save(dir, "pyhanko-key.pem", signer.key_pem.as_bytes());
    let cert = save(dir, "pyhanko-cert.pem", cert_pem(&signer.cert).as_bytes());
    let script = r#"
import sys
from pyhanko.sign import signers, fields
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
key, cert, ca, inp, out, field, perm = sys.argv[1:]
signer = signers.SimpleSigner.load(key, cert, ca_chain_files=(ca,))
meta = signers.PdfSignatureMetadata(field_name=field, subfilter=fields.SigSeedSubFilter.PADES)
if perm:
    meta = signers.PdfSignatureMetadata(field_name=field, certify=True,
        docmdp_permissions=fields.MDPPerm(int(perm)), subfilter=fields.SigSeedSubFilter.PADES)
with open(inp, 'rb') as f:
    w = IncrementalPdfFileWriter(f)
    with open(out, 'wb') as o:
        signers.sign_pdf(w, meta, signer=signer, output=o)
"#;
    let (ok, text) = run(Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(&key)
        .arg(&cert)
        .arg(&pki.ca_pem)
        .arg(input)
        .arg(output)
        .arg(field)
        .arg(docmdp.map(|p| p.to_string()).unwrap_or_default()));
    assert!(ok, "pyHanko could not sign: {text}");
}

/// A document signed elsewhere first (by pyHanko, certified allowing form filling) keeps its
/// signature valid next to kyso's.
#[test]
fn after_a_pyhanko_signature() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let mut leader = pki.ec_signer("Lãnh đạo");
    let mut clerk = pki.rsa_signer("Văn thư");
    let plain = save(dir, "plain.pdf", &make_pdf(2, 0, false));
    let first = dir.join("first.pdf");
    pyhanko_sign(&pki, &leader, &plain, &first, "Leader", Some(2));
    let first = std::fs::read(&first).unwrap();
    let second = sign_pdf(&first, &mut clerk, &options(&Offline)).unwrap();
    let file = save(dir, "second.pdf", &second);
    let (valid, report) = pyhanko_valid(&file, &pki);
    assert_eq!(valid, 2, "{report}");
    assert!(report.contains("Field 1: Leader"), "{report}");
    let (valid, report) = pdfsig_valid(&file);
    assert_eq!(valid, 2, "{report}");
    assert_qpdf_clean(&file);

    // Certified with no changes allowed: kyso refuses rather than break the certification.
    let locked = dir.join("locked.pdf");
    pyhanko_sign(&pki, &leader, &plain, &locked, "Leader", Some(1));
    let err = sign_pdf(
        &std::fs::read(&locked).unwrap(),
        &mut leader,
        &options(&Offline),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("certified with no changes allowed"),
        "{err}"
    );
}

/// A page whose `/Annots` is an indirect array and an indirect form whose `/Fields` is one:
/// those arrays and the form are written again, the page and the catalog are not.
#[test]
fn indirect_annots_and_an_existing_form() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let mut doc = Document::load_mem(&make_pdf(2, 0, false)).unwrap();
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let page = doc.page_iter().next().unwrap();
    let text_field = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Widget", "FT" => "Tx", "T" => Object::string_literal("So"),
        "Rect" => vec![100.into(), 100.into(), 200.into(), 120.into()], "P" => page,
    });
    let link = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Link",
        "Rect" => vec![10.into(), 10.into(), 50.into(), 20.into()],
    });
    let annots = doc.add_object(Object::Array(vec![link.into(), text_field.into()]));
    let fields = doc.add_object(Object::Array(vec![text_field.into()]));
    doc.get_dictionary_mut(page).unwrap().set("Annots", annots);
    let form = doc.add_object(dictionary! { "Fields" => fields });
    let catalog = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    doc.get_dictionary_mut(catalog)
        .unwrap()
        .set("AcroForm", form);
    let mut pdf = Vec::new();
    doc.save_to(&mut pdf).unwrap();

    let mut signer = pki.ec_signer("A");
    let signed = sign_pdf(&pdf, &mut signer, &options(&Offline)).unwrap();
    let update = String::from_utf8_lossy(&signed[pdf.len()..]).to_string();
    for id in [annots, fields, form] {
        assert!(
            update.contains(&format!("\n{} 0 obj\n", id.0)),
            "{id:?} not rewritten:\n{update}"
        );
    }
    for id in [page, catalog] {
        assert!(
            !update.contains(&format!("\n{} 0 obj\n", id.0)),
            "{id:?} rewritten:\n{update}"
        );
    }
    let file = save(dir, "form.pdf", &signed);
    assert_eq!(pyhanko_valid(&file, &pki).0, 1);
    assert_eq!(pdfsig_valid(&file).0, 1);
    assert_qpdf_clean(&file);
    let after = Document::load_mem(&signed).unwrap();
    let annots = after.get_object(annots).unwrap().as_array().unwrap();
    assert_eq!(annots.len(), 3);
    let fields = after.get_object(fields).unwrap().as_array().unwrap();
    assert_eq!(fields.len(), 2);
}

/// Files as other producers write them: qpdf linearized, with generated object streams, and
/// cairo's (through pdftocairo); each signed twice.
#[test]
fn files_from_other_producers() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let source = save(dir, "source.pdf", &make_pdf(3, 2000, false));
    let mut leader = pki.rsa_signer("Lãnh đạo");
    let mut clerk = pki.ec_signer("Văn thư");
    let variants: [(&str, Vec<&str>); 3] = [
        ("qpdf", vec!["--linearize"]),
        ("qpdf", vec!["--object-streams=generate"]),
        ("pdftocairo", vec!["-pdf"]),
    ];
    for (n, (tool, args)) in variants.iter().enumerate() {
        let made = dir.join(format!("made{n}.pdf"));
        let (ok, text) = run(Command::new(tool).args(args).arg(&source).arg(&made));
        assert!(ok, "{tool} {args:?}: {text}");
        let pdf = std::fs::read(&made).unwrap();
        let once = sign_pdf(&pdf, &mut leader, &options(&Offline)).unwrap();
        let twice = sign_pdf(&once, &mut clerk, &options(&Offline)).unwrap();
        let file = save(dir, &format!("signed{n}.pdf"), &twice);
        let (valid, report) = pyhanko_valid(&file, &pki);
        assert_eq!(valid, 2, "{tool} {args:?}:\n{report}");
        let (valid, report) = pdfsig_valid(&file);
        assert_eq!(valid, 2, "{tool} {args:?}:\n{report}");
        assert_qpdf_clean(&file);
    }
}

/// A transparent `w` × `h` PNG with `colour` where `on(x, y)`.
fn picture(w: u32, h: u32, colour: [u8; 3], on: impl Fn(f32, f32) -> bool) -> Vec<u8> {
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let alpha = if on(x as f32, y as f32) { 255 } else { 0 };
            rgba.extend_from_slice(&[colour[0], colour[1], colour[2], alpha]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&rgba).unwrap();
    writer.finish().unwrap();
    out
}

/// The Decree 30/2020 flow with its appearances: the leader's signature image, then the
/// clerk's seal with the document number and date (three widgets of one field), both valid.
#[test]
fn approved_then_issued_with_appearances() {
    use kyso_pdf::appearance::{Kind, Layout, Request};
    let request = |kind| Request {
        kind,
        signer: "Trần Văn Lãnh Đạo".into(),
        organisation: "Sở Nội vụ tỉnh Hà Giang".into(),
        time: time::macros::datetime!(2026-03-12 12:00:00 +07:00),
        doc_number: None,
        issued_date: None,
        copy_kind: None,
        comment: None,
        signature_image: None,
        seal_image: None,
        layout: Layout::default(),
    };
    for modern in [false, true] {
        let pki = Pki::new();
        let dir = pki.dir.path();
        let mut leader = pki.rsa_signer("Trần Văn Lãnh Đạo");
        let mut clerk = pki.ec_signer("Văn thư");
        let pdf = make_pdf(2, 0, modern);

        let mut approved = request(Kind::Approved);
        approved.signature_image = Some(picture(300, 120, [0, 0, 230], |x, y| {
            (y - 60.0 - 40.0 * (x / 20.0).sin()).abs() < 8.0
        }));
        let mut opts = options(&Offline);
        opts.appearance = Some(approved);
        let first = sign_pdf(&pdf, &mut leader, &opts).unwrap();

        let mut issued = request(Kind::Issued);
        issued.seal_image = Some(picture(200, 200, [220, 0, 0], |x, y| {
            (70.0..=98.0).contains(&((x - 99.5).powi(2) + (y - 99.5).powi(2)).sqrt())
        }));
        issued.doc_number = Some("123/BCY-CTSBMTT".into());
        issued.issued_date = Some("2026-03-12T12:00:00+07:00".into());
        let mut opts = options(&Offline);
        opts.reason = Some("Đóng dấu phát hành".into());
        opts.appearance = Some(issued);
        let second = sign_pdf(&first, &mut clerk, &opts).unwrap();

        let file = save(dir, "issued.pdf", &second);
        let (valid, report) = pyhanko_valid(&file, &pki);
        assert_eq!(valid, 2, "{report}");
        assert!(
            report.contains("compatible with the current document"),
            "{report}"
        );
        let (valid, report) = pdfsig_valid(&file);
        assert_eq!(valid, 2, "{report}");
        assert_eq!(report.matches("Signature #").count(), 2, "{report}");
        assert_qpdf_clean(&file);

        let doc = Document::load_mem(&second).unwrap();
        let form = doc.catalog().unwrap().get_deref(b"AcroForm", &doc).unwrap();
        let fields = form.as_dict().unwrap().get_deref(b"Fields", &doc).unwrap();
        let fields = fields.as_array().unwrap();
        assert_eq!(fields.len(), 2);
        let leader_field = doc
            .get_dictionary(fields[0].as_reference().unwrap())
            .unwrap();
        assert!(
            leader_field.has(b"AP"),
            "the leader's widget is merged with its field"
        );
        let seal_field = doc
            .get_dictionary(fields[1].as_reference().unwrap())
            .unwrap();
        let kids = seal_field.get(b"Kids").unwrap().as_array().unwrap();
        assert_eq!(kids.len(), 3, "seal, number and date");
    }
}
