//! PAdES signing (`ETSI.CAdES.detached`) as an incremental update.
//!
//! The original is parsed once with lopdf; only the objects the signature touches (the
//! catalog or its AcroForm, the field, the pages that get a widget and their `/Annots`) are
//! written again after the original bytes, with the signature dictionary whose `/Contents`
//! is a zero-filled placeholder. The byte range around it is hashed in one pass, the token
//! signs the CMS signed attributes, and `/ByteRange` and `/Contents` are filled in place.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::{Dictionary, Document, Object, ObjectId, Writer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::appearance::{self, Kind};
use crate::cades;
use crate::incremental::{self, Body, Previous};
use crate::net::Fetch;
use crate::signer::Signer;
use crate::timestamp;
use crate::Error;

/// How to sign.
pub struct Options<'a> {
    /// The signature field's name; a fresh `Signature<n>` when `None`.
    pub field_name: Option<String>,
    pub reason: Option<String>,
    pub location: Option<String>,
    /// What to draw; `None` for an invisible signature.
    pub appearance: Option<appearance::Request>,
    /// An RFC 3161 timestamping service (PAdES-B-T), reached through `fetch`.
    pub timestamp_url: Option<String>,
    pub fetch: &'a dyn Fetch,
    /// The signing time written into the signature dictionary's `/M` (PAdES keeps it out of
    /// the CMS signed attributes).
    pub time: OffsetDateTime,
}

/// The largest PDF kyso signs.
pub const MAX_SIZE: u64 = 100 * 1024 * 1024;

/// Room kept in `/Contents` for a timestamp token with its TSA's certificates.
const TIMESTAMP_RESERVE: usize = 16 * 1024;

/// Width of the `/ByteRange` array's inside, enough for four 10-digit numbers.
const BYTE_RANGE_WIDTH: usize = 44;

/// Signs `pdf` and returns the signed file: `pdf` unchanged, followed by the update.
pub fn sign_pdf(pdf: &[u8], signer: &mut dyn Signer, options: &Options) -> Result<Vec<u8>, Error> {
    if pdf.len() as u64 > MAX_SIZE {
        return Err(Error::TooLarge {
            size: pdf.len() as u64,
            limit: MAX_SIZE,
        });
    }
    if !pdf.starts_with(b"%PDF-") {
        let head = &pdf[..pdf.len().min(1024)];
        return Err(if head.windows(5).any(|w| w == b"%PDF-") {
            Error::Damaged("it has bytes before its %PDF header".into())
        } else {
            Error::NotPdf
        });
    }
    let draw = |doc: &Document, new: &mut Document| match &options.appearance {
        Some(req) if req.kind != Kind::None => appearance::build(doc, new, req),
        _ => Ok(Vec::new()),
    };
    sign_drawn(pdf, signer, options, &draw)
}

/// What draws the widgets: the new objects go into the second document.
type Draw<'a> = dyn Fn(&Document, &mut Document) -> Result<Vec<appearance::Widget>, Error> + 'a;

/// [`sign_pdf`] with the widgets from `draw`.
fn sign_drawn(
    pdf: &[u8],
    signer: &mut dyn Signer,
    options: &Options,
    draw: &Draw,
) -> Result<Vec<u8>, Error> {
    let chain = signer.chain();
    let certs = cades::Certificates::new(signer.certificate(), &chain)?;
    let chain_size: usize = chain.iter().map(Vec::len).sum();
    let mut reserve = certs.estimated_size(chain_size);
    if options.timestamp_url.is_some() {
        reserve += TIMESTAMP_RESERVE;
    }
    // The parser and the drawing meet arbitrary input: a panic there is a document that
    // cannot be read, not a crash.
    let prepared = catch_unwind(AssertUnwindSafe(|| prepare(pdf, options, draw, reserve)))
        .unwrap_or_else(|_| Err(Error::Damaged("its structure cannot be read".into())))?;
    let Prepared {
        mut out,
        gap_start,
        gap_end,
    } = prepared;

    let mut hasher = Sha256::new();
    hasher.update(&out[..gap_start]);
    hasher.update(&out[gap_end..]);
    let digest = hasher.finalize();

    let mut signed = cades::sign(&certs, signer, &digest)?;
    if let Some(url) = &options.timestamp_url {
        let token = timestamp::stamp(options.fetch, url, signed.signature())?;
        signed.add_timestamp(&token)?;
    }
    let cms = cades::encode(&certs, signed)?;
    if cms.len() > reserve {
        return Err(Error::Other(format!(
            "the signature takes {} bytes, more than the {reserve} reserved for it",
            cms.len()
        )));
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, byte) in cms.iter().enumerate() {
        out[gap_start + 1 + 2 * i] = HEX[usize::from(byte >> 4)];
        out[gap_start + 2 + 2 * i] = HEX[usize::from(byte & 15)];
    }
    Ok(out)
}

/// The signed file before its signature: `/ByteRange` filled, `/Contents` zeroed between
/// `gap_start` and `gap_end` (its angle brackets included).
struct Prepared {
    out: Vec<u8>,
    gap_start: usize,
    gap_end: usize,
}

fn prepare(pdf: &[u8], options: &Options, draw: &Draw, reserve: usize) -> Result<Prepared, Error> {
    let doc = load(pdf)?;
    let mut new = Document::new_from_prev(&doc);
    let widgets = draw(&doc, &mut new)?;
    let sig_id = next_id(&mut new)?;
    let name = field_name(&doc, options.field_name.as_deref())?;
    add_field(&doc, &mut new, &name, sig_id, &widgets)?;

    let (sig_body, byte_range_at, contents_at) = signature_dictionary(options, reserve);
    let free_id = next_id(&mut new)?.0;
    let mut objects: Vec<(ObjectId, Body)> = std::mem::take(&mut new.objects)
        .into_iter()
        .map(|(id, object)| (id, Body::Object(object)))
        .collect();
    objects.push((sig_id, Body::Raw(sig_body)));
    let previous = Previous {
        bytes: pdf,
        xref_start: doc.xref_start,
        trailer: &doc.trailer,
    };
    let written = incremental::write(&previous, objects, free_id)?;
    let mut out = written.bytes;
    let base = written
        .offsets
        .iter()
        .find(|(id, _)| *id == sig_id)
        .map(|(_, at)| *at)
        .ok_or_else(|| Error::Other("the signature dictionary was not written".into()))?;

    let gap_start = base + contents_at;
    let gap_end = gap_start + 2 * reserve + 2;
    let range = format!("0 {gap_start} {gap_end} {}", out.len() - gap_end);
    if range.len() > BYTE_RANGE_WIDTH {
        return Err(Error::Other(
            "the byte range does not fit its placeholder".into(),
        ));
    }
    let at = base + byte_range_at;
    out[at..at + range.len()].copy_from_slice(range.as_bytes());
    Ok(Prepared {
        out,
        gap_start,
        gap_end,
    })
}

/// Parses `pdf`, refusing what cannot take an incremental update safely.
fn load(pdf: &[u8]) -> Result<Document, Error> {
    let doc = Document::load_mem(pdf).map_err(|e| {
        if tail_mentions_encrypt(pdf) {
            Error::Encrypted
        } else {
            Error::Damaged(e.to_string())
        }
    })?;
    if doc.trailer.has(b"Encrypt") || doc.encryption_state.is_some() {
        return Err(Error::Encrypted);
    }
    if doc.xref_recovery.is_some() || doc.xref_start == 0 {
        return Err(Error::Damaged(
            "its cross-reference table does not match its objects (is it truncated?)".into(),
        ));
    }
    if doc.catalog().is_err() {
        return Err(Error::Damaged("it has no document catalog".into()));
    }
    if doc.page_iter().next().is_none() {
        return Err(Error::Damaged("it has no pages".into()));
    }
    if certified_without_changes(&doc) {
        return Err(Error::Other(
            "the document is certified with no changes allowed, so no signature can be added"
                .into(),
        ));
    }
    Ok(doc)
}

/// Whether a certification signature (DocMDP) forbids every change, signatures included.
fn certified_without_changes(doc: &Document) -> bool {
    let sig = doc
        .catalog()
        .ok()
        .and_then(|c| c.get_deref(b"Perms", doc).ok())
        .and_then(|p| p.as_dict().ok())
        .and_then(|p| p.get_deref(b"DocMDP", doc).ok())
        .and_then(|s| s.as_dict().ok());
    let references = sig
        .and_then(|s| s.get_deref(b"Reference", doc).ok())
        .and_then(|r| r.as_array().ok());
    references.into_iter().flatten().any(|r| {
        let r = deref(doc, r).and_then(|r| r.as_dict().ok());
        r.and_then(|r| r.get_deref(b"TransformParams", doc).ok())
            .and_then(|p| p.as_dict().ok())
            .and_then(|p| p.get(b"P").ok())
            .and_then(|p| p.as_i64().ok())
            == Some(1)
    })
}

/// Whether the last trailer of a file lopdf could not read names an `/Encrypt` dictionary.
fn tail_mentions_encrypt(pdf: &[u8]) -> bool {
    let tail = &pdf[pdf.len().saturating_sub(4096)..];
    tail.windows(8).any(|w| w == b"/Encrypt")
}

fn next_id(new: &mut Document) -> Result<ObjectId, Error> {
    new.try_new_object_id()
        .map_err(|_| Error::Damaged("it has too many objects".into()))
}

/// A PDF text string: literal when ASCII, else UTF-16BE with its byte order mark.
fn text(s: &str) -> Object {
    lopdf::text_string(s)
}

/// `D:YYYYMMDDHHmmSS+HH'mm'`.
fn pdf_date(t: OffsetDateTime) -> String {
    let offset = t.offset();
    let (h, m, _) = offset.as_hms();
    format!(
        "D:{:04}{:02}{:02}{:02}{:02}{:02}{}{:02}'{:02}'",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        if offset.is_negative() { '-' } else { '+' },
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// The signature dictionary with a zeroed `/Contents` of `reserve` bytes, and the offsets in
/// it of the `/ByteRange` array's inside and of the `/Contents` string's `<`.
fn signature_dictionary(options: &Options, reserve: usize) -> (Vec<u8>, usize, usize) {
    let mut body =
        b"<</Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M ".to_vec();
    let put = |body: &mut Vec<u8>, object: &Object| {
        // Writing into a Vec cannot fail.
        let _ = Writer::write_object(body, object);
    };
    put(&mut body, &text(&pdf_date(options.time)));
    if let Some(reason) = &options.reason {
        body.extend_from_slice(b" /Reason ");
        put(&mut body, &text(reason));
    }
    if let Some(location) = &options.location {
        body.extend_from_slice(b" /Location ");
        put(&mut body, &text(location));
    }
    body.extend_from_slice(b" /ByteRange [");
    let byte_range_at = body.len();
    body.extend_from_slice(&[b' '; BYTE_RANGE_WIDTH]);
    body.extend_from_slice(b"] /Contents ");
    let contents_at = body.len();
    body.push(b'<');
    body.resize(body.len() + 2 * reserve, b'0');
    body.extend_from_slice(b">>>");
    (body, byte_range_at, contents_at)
}

/// An object to change: its version in `new` if already changed there, else the original's.
fn editable(doc: &Document, new: &Document, id: ObjectId) -> Result<Object, Error> {
    new.objects
        .get(&id)
        .or_else(|| doc.objects.get(&id))
        .cloned()
        .ok_or_else(|| Error::Damaged(format!("object {} {} R is missing", id.0, id.1)))
}

fn deref<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Object> {
    match object {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

/// The fully qualified names of the document's form fields.
fn existing_names(doc: &Document) -> HashSet<String> {
    let mut names = HashSet::new();
    let fields = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"AcroForm").ok())
        .and_then(|a| deref(doc, a))
        .and_then(|a| a.as_dict().ok())
        .and_then(|a| a.get(b"Fields").ok())
        .and_then(|f| deref(doc, f))
        .and_then(|f| f.as_array().ok());
    let mut todo: Vec<(&Object, String, usize)> = fields
        .map(|f| f.iter().map(|o| (o, String::new(), 0)).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    while let Some((object, parent, depth)) = todo.pop() {
        if depth > 32 || matches!(object, Object::Reference(id) if !seen.insert(*id)) {
            continue;
        }
        let Some(Ok(field)) = deref(doc, object).map(Object::as_dict) else {
            continue;
        };
        let name = match field.get(b"T").and_then(lopdf::decode_text_string) {
            Ok(t) if parent.is_empty() => t,
            Ok(t) => format!("{parent}.{t}"),
            Err(_) => parent.clone(),
        };
        if let Some(Ok(kids)) = field
            .get(b"Kids")
            .ok()
            .and_then(|k| deref(doc, k))
            .map(Object::as_array)
        {
            todo.extend(kids.iter().map(|k| (k, name.clone(), depth + 1)));
        }
        names.insert(name);
    }
    names
}

fn field_name(doc: &Document, wanted: Option<&str>) -> Result<String, Error> {
    let names = existing_names(doc);
    match wanted {
        Some(name) if name.is_empty() || name.contains('.') => Err(Error::Other(format!(
            "\"{name}\" cannot name a signature field (empty, or with a period)"
        ))),
        Some(name) if names.contains(name) => Err(Error::Other(format!(
            "the document already has a field named \"{name}\""
        ))),
        Some(name) => Ok(name.to_string()),
        None => Ok((1..)
            .map(|n| format!("Signature{n}"))
            .find(|n| !names.contains(n))
            .unwrap_or_default()),
    }
}

fn rect(r: [f32; 4]) -> Object {
    Object::Array(r.iter().map(|&v| Object::Real(v)).collect())
}

/// Adds the signature field `name` with value `sig_id` and its widgets: to the AcroForm
/// (created if missing, `/SigFlags 3`) and to the `/Annots` of the widgets' pages.
fn add_field(
    doc: &Document,
    new: &mut Document,
    name: &str,
    sig_id: ObjectId,
    widgets: &[appearance::Widget],
) -> Result<(), Error> {
    let mut field = Dictionary::new();
    field.set("FT", Object::Name(b"Sig".to_vec()));
    field.set("T", text(name));
    field.set("V", Object::Reference(sig_id));
    let widget = |page: ObjectId, r: [f32; 4], normal: Option<ObjectId>| {
        let mut w = Dictionary::new();
        w.set("Type", Object::Name(b"Annot".to_vec()));
        w.set("Subtype", Object::Name(b"Widget".to_vec()));
        w.set("Rect", rect(r));
        w.set("P", Object::Reference(page));
        match normal {
            Some(n) => {
                w.set("F", Object::Integer(4));
                let mut ap = Dictionary::new();
                ap.set("N", Object::Reference(n));
                w.set("AP", Object::Dictionary(ap));
            }
            // Hidden from view (print, locked): an invisible signature.
            None => w.set("F", Object::Integer(132)),
        }
        w
    };
    let mut annots: BTreeMap<ObjectId, Vec<ObjectId>> = BTreeMap::new();
    let field_id = match widgets {
        [] | [_] => {
            let (page, r, normal) = match widgets.first() {
                Some(w) => (w.page, w.rect, Some(w.normal)),
                None => {
                    let first = doc
                        .page_iter()
                        .next()
                        .ok_or_else(|| Error::Damaged("it has no pages".into()))?;
                    (first, [0.0; 4], None)
                }
            };
            let mut merged = widget(page, r, normal);
            merged.extend(&field);
            let id = next_id(new)?;
            new.objects.insert(id, Object::Dictionary(merged));
            annots.entry(page).or_default().push(id);
            id
        }
        many => {
            let field_id = next_id(new)?;
            let mut kids = Vec::new();
            // The kids carry no /Parent: poppler takes a kid with one for a child field of
            // its own (without the signature), while every reader finds them through /Kids.
            for w in many {
                let kid = widget(w.page, w.rect, Some(w.normal));
                let id = next_id(new)?;
                new.objects.insert(id, Object::Dictionary(kid));
                annots.entry(w.page).or_default().push(id);
                kids.push(Object::Reference(id));
            }
            field.set("Kids", Object::Array(kids));
            new.objects.insert(field_id, Object::Dictionary(field));
            field_id
        }
    };
    for (page, ids) in annots {
        append_to_page(doc, new, page, &ids)?;
    }
    add_to_acroform(doc, new, field_id)
}

/// Appends `refs` to the array `key` of `dict`: a direct array, an indirect one (changed in
/// its own object), or a new one.
fn append(
    doc: &Document,
    new: &mut Document,
    dict: &mut Dictionary,
    key: &[u8],
    refs: &[ObjectId],
) -> Result<(), Error> {
    let refs = refs.iter().map(|&id| Object::Reference(id));
    match dict.get(key).ok().cloned() {
        Some(Object::Reference(array_id)) => {
            let mut array = editable(doc, new, array_id)?;
            match &mut array {
                Object::Array(items) => items.extend(refs),
                _ => {
                    return Err(Error::Damaged(format!(
                        "its /{} is not an array",
                        String::from_utf8_lossy(key)
                    )))
                }
            }
            new.objects.insert(array_id, array);
        }
        Some(Object::Array(mut items)) => {
            items.extend(refs);
            dict.set(key, Object::Array(items));
        }
        _ => dict.set(key, Object::Array(refs.collect())),
    }
    Ok(())
}

fn append_to_page(
    doc: &Document,
    new: &mut Document,
    page: ObjectId,
    ids: &[ObjectId],
) -> Result<(), Error> {
    let Object::Dictionary(mut dict) = editable(doc, new, page)? else {
        return Err(Error::Damaged(format!(
            "page {} {} R is not a dictionary",
            page.0, page.1
        )));
    };
    let before = dict.clone();
    append(doc, new, &mut dict, b"Annots", ids)?;
    // An indirect /Annots array changes on its own, leaving the page as it was.
    if dict != before {
        new.objects.insert(page, Object::Dictionary(dict));
    }
    Ok(())
}

fn add_to_acroform(doc: &Document, new: &mut Document, field: ObjectId) -> Result<(), Error> {
    let catalog_id = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|_| Error::Damaged("its trailer has no /Root reference".into()))?;
    let Object::Dictionary(mut catalog) = editable(doc, new, catalog_id)? else {
        return Err(Error::Damaged("its catalog is not a dictionary".into()));
    };
    let fill = |doc: &Document, new: &mut Document, form: &mut Dictionary| {
        append(doc, new, form, b"Fields", &[field])?;
        let flags = form.get(b"SigFlags").and_then(Object::as_i64).unwrap_or(0);
        form.set("SigFlags", Object::Integer(flags | 3));
        Ok::<_, Error>(())
    };
    match catalog.get(b"AcroForm").ok().cloned() {
        Some(Object::Reference(form_id)) => {
            let Object::Dictionary(mut form) = editable(doc, new, form_id)? else {
                return Err(Error::Damaged("its /AcroForm is not a dictionary".into()));
            };
            let before = form.clone();
            fill(doc, new, &mut form)?;
            if form != before {
                new.objects.insert(form_id, Object::Dictionary(form));
            }
        }
        Some(Object::Dictionary(mut form)) => {
            let before = form.clone();
            fill(doc, new, &mut form)?;
            if form != before {
                catalog.set("AcroForm", Object::Dictionary(form));
                new.objects.insert(catalog_id, Object::Dictionary(catalog));
            }
        }
        _ => {
            let mut form = Dictionary::new();
            fill(doc, new, &mut form)?;
            let form_id = next_id(new)?;
            new.objects.insert(form_id, Object::Dictionary(form));
            catalog.set("AcroForm", Object::Reference(form_id));
            new.objects.insert(catalog_id, Object::Dictionary(catalog));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::StringFormat;

    #[test]
    fn dates_and_text_strings() {
        let t = time::macros::datetime!(2019-03-12 12:00:05 +07:00);
        assert_eq!(pdf_date(t), "D:20190312120005+07'00'");
        let t = time::macros::datetime!(2019-03-12 12:00:05 -03:30);
        assert_eq!(pdf_date(t), "D:20190312120005-03'30'");
        assert_eq!(text("Hà Nội"), {
            let mut b = vec![0xfe, 0xff];
            b.extend("Hà Nội".encode_utf16().flat_map(u16::to_be_bytes));
            Object::String(b, StringFormat::Hexadecimal)
        });
        assert_eq!(
            lopdf::decode_text_string(&text("Hà Nội")).unwrap(),
            "Hà Nội"
        );
        assert_eq!(text("Approved"), Object::string_literal("Approved"));
    }

    /// A self-signed P-256 signer in memory.
    struct Soft {
        cert: Vec<u8>,
        key: p256::ecdsa::SigningKey,
    }

    impl Signer for Soft {
        fn certificate(&self) -> &[u8] {
            &self.cert
        }
        fn key_kind(&self) -> crate::signer::KeyKind {
            crate::signer::KeyKind::Ec
        }
        fn sign_digest(
            &mut self,
            _: crate::signer::DigestAlg,
            digest: &[u8],
        ) -> Result<Vec<u8>, String> {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let sig: p256::ecdsa::Signature =
                self.key.sign_prehash(digest).map_err(|e| e.to_string())?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
    }

    fn soft() -> Soft {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "unit test");
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::ContentCommitment,
        ];
        let cert = params.self_signed(&pair).unwrap().der().to_vec();
        let key = <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(
            &pair.serialize_der(),
        )
        .unwrap();
        Soft { cert, key }
    }

    /// A two-page PDF with a classic cross-reference table.
    fn two_pages() -> Vec<u8> {
        let mut doc = Document::with_version("1.7");
        let pages = doc.new_object_id();
        let kids = (0..2)
            .map(|_| {
                let mut page = Dictionary::new();
                page.set("Type", Object::Name(b"Page".to_vec()));
                page.set("Parent", pages);
                page.set("MediaBox", vec![0.into(), 0.into(), 595.into(), 842.into()]);
                Object::Reference(doc.add_object(page))
            })
            .collect::<Vec<_>>();
        let mut root = Dictionary::new();
        root.set("Type", Object::Name(b"Pages".to_vec()));
        root.set("Count", 2);
        root.set("Kids", kids);
        doc.objects.insert(pages, Object::Dictionary(root));
        let mut catalog = Dictionary::new();
        catalog.set("Type", Object::Name(b"Catalog".to_vec()));
        catalog.set("Pages", pages);
        let catalog = doc.add_object(catalog);
        doc.trailer.set("Root", catalog);
        doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    /// Draws `pages.len()` widgets, one per page given (counted from 1).
    fn widgets_on(
        pages: &'static [u32],
    ) -> impl Fn(&Document, &mut Document) -> Result<Vec<appearance::Widget>, Error> {
        move |doc, new| {
            let ids = doc.get_pages();
            Ok(pages
                .iter()
                .map(|n| {
                    let mut form = Dictionary::new();
                    form.set("Type", Object::Name(b"XObject".to_vec()));
                    form.set("Subtype", Object::Name(b"Form".to_vec()));
                    form.set("BBox", vec![0.into(), 0.into(), 100.into(), 50.into()]);
                    let normal = new.add_object(lopdf::Stream::new(
                        form,
                        b"0 0 1 rg 0 0 100 50 re f".to_vec(),
                    ));
                    appearance::Widget {
                        page: ids[n],
                        rect: [100.0, 100.0, 200.0, 150.0],
                        normal,
                    }
                })
                .collect())
        }
    }

    fn options() -> Options<'static> {
        Options {
            field_name: None,
            reason: None,
            location: None,
            appearance: None,
            timestamp_url: None,
            fetch: &crate::net::Offline,
            time: time::macros::datetime!(2026-03-12 12:00:00 +07:00),
        }
    }

    /// poppler's verdict on `pdf`: the signature is valid (its self-signed certificate is not
    /// trusted, which pdfsig reports separately).
    fn assert_pdfsig_valid(pdf: &[u8]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), pdf).unwrap();
        let out = std::process::Command::new("pdfsig")
            .arg(file.path())
            .output()
            .expect("pdfsig (poppler-utils) cannot run; scripts/setup-debian installs it");
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            report.matches("Signature #").count(),
            1,
            "one signature, read once:\n{report}"
        );
        assert!(
            report.contains("Signature Validation: Signature is Valid."),
            "{report}"
        );
    }

    fn field_of(pdf: &[u8]) -> (Document, Dictionary) {
        let doc = Document::load_mem(pdf).unwrap();
        let form = doc.catalog().unwrap().get_deref(b"AcroForm", &doc).unwrap();
        let fields = form
            .as_dict()
            .unwrap()
            .get(b"Fields")
            .unwrap()
            .as_array()
            .unwrap();
        let field = doc
            .get_dictionary(fields[0].as_reference().unwrap())
            .unwrap()
            .clone();
        (doc, field)
    }

    fn assert_visible_widget(doc: &Document, widget: &Dictionary, page: u32) {
        let page_id = doc.get_pages()[&page];
        assert_eq!(
            widget.get(b"Subtype").unwrap().as_name().unwrap(),
            b"Widget"
        );
        assert_eq!(widget.get(b"F").unwrap().as_i64().unwrap(), 4);
        assert_eq!(widget.get(b"P").unwrap().as_reference().unwrap(), page_id);
        let ap = widget.get(b"AP").unwrap().as_dict().unwrap();
        let normal = doc.get_object(ap.get(b"N").unwrap().as_reference().unwrap());
        assert!(normal.unwrap().as_stream().is_ok());
        let annots = doc
            .get_dictionary(page_id)
            .unwrap()
            .get(b"Annots")
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        assert_eq!(annots, 1);
    }

    #[test]
    fn one_widget_is_merged_with_its_field() {
        let signed = sign_drawn(&two_pages(), &mut soft(), &options(), &widgets_on(&[2])).unwrap();
        assert_pdfsig_valid(&signed);
        let (doc, field) = field_of(&signed);
        assert_eq!(field.get(b"FT").unwrap().as_name().unwrap(), b"Sig");
        assert!(!field.has(b"Kids"));
        assert_visible_widget(&doc, &field, 2);
        assert!(!doc
            .get_dictionary(doc.get_pages()[&1])
            .unwrap()
            .has(b"Annots"));
    }

    #[test]
    fn several_widgets_are_kids_of_the_field() {
        let signed =
            sign_drawn(&two_pages(), &mut soft(), &options(), &widgets_on(&[1, 2])).unwrap();
        assert_pdfsig_valid(&signed);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &signed).unwrap();
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/python/venv/bin/pyhanko"
        );
        let out = std::process::Command::new(venv)
            .args([
                "sign",
                "validate",
                "--pretty-print",
                "--no-revocation-check",
            ])
            .arg(file.path())
            .output()
            .expect("pyHanko cannot run; scripts/setup-debian installs it");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains("The signature is cryptographically sound."),
            "{report}"
        );
        assert!(
            report.contains("The signature covers the entire file."),
            "{report}"
        );
        let (doc, field) = field_of(&signed);
        assert!(!field.has(b"Subtype"));
        let kids = field.get(b"Kids").unwrap().as_array().unwrap();
        assert_eq!(kids.len(), 2);
        for (kid, page) in kids.iter().zip([1, 2]) {
            let widget = doc.get_dictionary(kid.as_reference().unwrap()).unwrap();
            assert_visible_widget(&doc, widget, page);
        }
    }

    #[test]
    fn without_appearance_the_widget_is_invisible_on_page_one() {
        let signed = sign_pdf(&two_pages(), &mut soft(), &options()).unwrap();
        let (doc, field) = field_of(&signed);
        assert_eq!(field.get(b"F").unwrap().as_i64().unwrap(), 132);
        assert_eq!(
            field.get(b"P").unwrap().as_reference().unwrap(),
            doc.get_pages()[&1]
        );
        assert!(!field.has(b"AP"));
        let rect: Vec<f32> = field
            .get(b"Rect")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_float().unwrap())
            .collect();
        assert_eq!(rect, [0.0; 4]);
    }

    /// pyHanko's report on `pdf`, trusting the unit test's self-signed certificate.
    fn pyhanko_report(pdf: &[u8], cert: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signed.pdf");
        std::fs::write(&file, pdf).unwrap();
        let trust = dir.path().join("cert.der");
        std::fs::write(&trust, cert).unwrap();
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/python/venv/bin/pyhanko"
        );
        let out = std::process::Command::new(venv)
            .args([
                "sign",
                "validate",
                "--pretty-print",
                "--no-revocation-check",
            ])
            .args(["--trust-replace", "--trust"])
            .arg(&trust)
            .arg(&file)
            .output()
            .expect("pyHanko cannot run; scripts/setup-debian installs it");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// A second signature with several widgets (the seal with the number and date) leaves
    /// the first valid, for pyHanko's modification analysis and for poppler.
    #[test]
    fn a_second_signature_with_several_widgets() {
        let mut signer = soft();
        let once = sign_pdf(&two_pages(), &mut signer, &options()).unwrap();
        let twice = sign_drawn(&once, &mut signer, &options(), &widgets_on(&[1, 2])).unwrap();
        let report = pyhanko_report(&twice, &signer.cert);
        assert_eq!(
            report.matches("The signature is judged VALID.").count(),
            2,
            "{report}"
        );
        assert!(
            report.contains("compatible with the current document"),
            "{report}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &twice).unwrap();
        let out = std::process::Command::new("pdfsig")
            .arg(file.path())
            .output()
            .expect("pdfsig (poppler-utils) cannot run; scripts/setup-debian installs it");
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(report.matches("Signature #").count(), 2, "{report}");
        assert_eq!(report.matches("Signature is Valid.").count(), 2, "{report}");
    }

    #[test]
    fn an_appearance_that_fails_fails_the_signature() {
        let fail = |_: &Document, _: &mut Document| Err(Error::Appearance("no image".into()));
        let err = sign_drawn(&two_pages(), &mut soft(), &options(), &fail).unwrap_err();
        assert!(matches!(err, Error::Appearance(_)), "{err}");
    }
}
