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
    match catch_unwind(AssertUnwindSafe(|| sign_parsed(pdf, signer, options))) {
        Ok(result) => result,
        Err(_) => Err(Error::Damaged("its structure cannot be read".into())),
    }
}

fn sign_parsed(pdf: &[u8], signer: &mut dyn Signer, options: &Options) -> Result<Vec<u8>, Error> {
    let doc = load(pdf)?;
    let certs = cades::Certificates::new(signer.certificate(), &signer.chain())?;
    let chain_size: usize = signer.chain().iter().map(Vec::len).sum();
    let mut reserve = certs.estimated_size(chain_size);
    if options.timestamp_url.is_some() {
        reserve += TIMESTAMP_RESERVE;
    }

    let mut new = Document::new_from_prev(&doc);
    let widgets = match &options.appearance {
        Some(req) if req.kind != Kind::None => appearance::build(&doc, &mut new, req)?,
        _ => Vec::new(),
    };
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

    // /Contents spans `gap_start..gap_end`, its angle brackets included.
    let gap_start = base + contents_at;
    let gap_end = gap_start + 2 * reserve + 2;
    let range = format!("0 {gap_start} {gap_end} {}", out.len() - gap_end);
    out[base + byte_range_at..base + byte_range_at + range.len()].copy_from_slice(range.as_bytes());

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
            for w in many {
                let mut kid = widget(w.page, w.rect, Some(w.normal));
                kid.set("Parent", Object::Reference(field_id));
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
}
