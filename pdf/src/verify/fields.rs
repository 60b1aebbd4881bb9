//! The signature fields of a PDF (the AcroForm's fields and their kids) and the checks of a
//! signature's byte range against the file's bytes.

use std::collections::HashSet;

use lopdf::{Dictionary, Document, Object, ObjectId};

/// Deepest field tree walked.
const MAX_DEPTH: usize = 32;

/// A signature field with a value.
#[derive(Debug, Default)]
pub struct SigField {
    /// The fully qualified field name.
    pub name: String,
    pub sub_filter: Option<String>,
    /// `/ByteRange`, as written.
    pub byte_range: Option<Vec<i64>>,
    /// `/Contents`, decoded.
    pub contents: Option<Vec<u8>>,
    /// `/M`, as written (a PDF date).
    pub m: Option<String>,
}

/// Every signed signature field, in the order of the form.
pub fn signature_fields(doc: &Document) -> Vec<SigField> {
    let mut out = Vec::new();
    let Ok(catalog) = doc.catalog() else {
        return out;
    };
    let Some(form) = catalog.get(b"AcroForm").ok().and_then(|o| dict(doc, o)) else {
        return out;
    };
    let Some(fields) = form.get(b"Fields").ok().and_then(|o| array(doc, o)) else {
        return out;
    };
    let mut seen = HashSet::new();
    for field in fields {
        walk(doc, field, "", None, 0, &mut seen, &mut out);
    }
    out
}

fn walk(
    doc: &Document,
    obj: &Object,
    parent: &str,
    inherited_ft: Option<&[u8]>,
    depth: usize,
    seen: &mut HashSet<ObjectId>,
    out: &mut Vec<SigField>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Object::Reference(id) = obj {
        if !seen.insert(*id) {
            return;
        }
    }
    let Some(field) = dict(doc, obj) else {
        return;
    };
    let partial = field
        .get(b"T")
        .ok()
        .and_then(|t| t.as_str().ok())
        .map(|t| String::from_utf8_lossy(t).into_owned());
    let name = match (parent.is_empty(), partial) {
        (_, None) => parent.to_string(),
        (true, Some(t)) => t,
        (false, Some(t)) => format!("{parent}.{t}"),
    };
    let ft = field
        .get(b"FT")
        .ok()
        .and_then(|o| o.as_name().ok())
        .or(inherited_ft);
    if let Some(kids) = field.get(b"Kids").ok().and_then(|o| array(doc, o)) {
        for kid in kids {
            walk(doc, kid, &name, ft, depth + 1, seen, out);
        }
    }
    if ft != Some(b"Sig".as_slice()) {
        return;
    }
    let Some(value) = field.get(b"V").ok().and_then(|o| dict(doc, o)) else {
        return;
    };
    let text = |key: &[u8]| {
        value
            .get(key)
            .ok()
            .and_then(|o| match o {
                Object::Name(n) => Some(n.as_slice()),
                Object::String(s, _) => Some(s.as_slice()),
                _ => None,
            })
            .map(|s| String::from_utf8_lossy(s).into_owned())
    };
    out.push(SigField {
        name,
        sub_filter: text(b"SubFilter"),
        byte_range: value.get(b"ByteRange").ok().and_then(|o| {
            array(doc, o)?
                .iter()
                .map(|n| n.as_i64().ok())
                .collect::<Option<Vec<i64>>>()
        }),
        contents: value.get(b"Contents").ok().and_then(|o| match o {
            Object::String(s, _) => Some(s.clone()),
            _ => None,
        }),
        m: text(b"M"),
    });
}

fn dict<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Dictionary> {
    doc.dereference(obj).ok()?.1.as_dict().ok()
}

fn array<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Vec<Object>> {
    doc.dereference(obj).ok()?.1.as_array().ok()
}

/// The two signed ranges of `pdf` after checking a ByteRange: four non-negative numbers, the
/// first range from offset 0, the gap exactly the hexadecimal string that `/Contents` is (and
/// holding those bytes), the second range after the gap and inside the file.
pub fn signed_ranges<'a>(
    pdf: &'a [u8],
    byte_range: &[i64],
    contents: &[u8],
) -> Result<(&'a [u8], &'a [u8]), String> {
    let [start, len1, start2, len2] = byte_range else {
        return Err("the ByteRange does not have four numbers".into());
    };
    let numbers: Option<Vec<usize>> = [*start, *len1, *start2, *len2]
        .iter()
        .map(|&n| usize::try_from(n).ok())
        .collect();
    let Some(&[start, len1, start2, len2]) = numbers.as_deref() else {
        return Err("the ByteRange has negative numbers".into());
    };
    if start != 0 {
        return Err("the ByteRange does not start at the beginning of the file".into());
    }
    let end2 = start2
        .checked_add(len2)
        .filter(|&e| e <= pdf.len())
        .ok_or("the ByteRange reaches beyond the end of the file")?;
    if len1 >= start2 || start2 - len1 < 2 {
        return Err("the ByteRange's ranges overlap".into());
    }
    let gap = &pdf[len1..start2];
    if gap.first() != Some(&b'<') || gap.last() != Some(&b'>') {
        return Err("the gap of the ByteRange is not the /Contents string".into());
    }
    let hex = &gap[1..gap.len() - 1];
    let decoded = decode_hex(hex).ok_or("the gap of the ByteRange is not a hexadecimal string")?;
    if decoded != contents {
        return Err("the gap of the ByteRange does not hold /Contents".into());
    }
    Ok((&pdf[..len1], &pdf[start2..end2]))
}

/// A PDF hexadecimal string's bytes (white space ignored, an odd last digit padded with 0).
fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let digits: Vec<u8> = hex
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|&b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    Some(
        digits
            .chunks(2)
            .map(|c| c[0] << 4 | c.get(1).copied().unwrap_or(0))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_range_checks() {
        let pdf = b"abc<0102>def";
        let (a, b) = signed_ranges(pdf, &[0, 3, 9, 3], &[1, 2]).unwrap();
        assert_eq!((a, b), (&b"abc"[..], &b"def"[..]));
        assert!(signed_ranges(pdf, &[0, 3, 9, 4], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[1, 2, 9, 3], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[0, 4, 9, 3], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[0, 3, 9, 3], &[1, 3]).is_err());
        assert!(signed_ranges(pdf, &[0, 9, 3, 3], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[0, 3, -9, 3], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[0, 3, 9], &[1, 2]).is_err());
        assert!(signed_ranges(pdf, &[0, 3, i64::MAX, i64::MAX], &[1, 2]).is_err());
    }
}
