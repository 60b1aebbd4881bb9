//! An incremental update (ISO 32000-1, 7.5.6): the original bytes untouched, then the new and
//! changed objects, a cross-reference section of the same kind as the original's last one
//! (table or stream) pointing back with `/Prev`, the trailer and `startxref`.

use std::io::Write;

use lopdf::{Dictionary, Object, ObjectId, Writer};

use crate::Error;

/// An object's body: a lopdf object, or bytes written as they are.
pub(crate) enum Body {
    Object(Object),
    Raw(Vec<u8>),
}

/// What the update needs to know of the original file.
pub(crate) struct Previous<'a> {
    pub bytes: &'a [u8],
    /// The offset of its last cross-reference section (its `startxref`).
    pub xref_start: usize,
    /// Its trailer, of which `/Root`, `/Info` and `/ID` carry over.
    pub trailer: &'a Dictionary,
}

impl Previous<'_> {
    /// Whether the last cross-reference section is a stream (else a classic table).
    fn xref_is_stream(&self) -> bool {
        let rest = self.bytes.get(self.xref_start..).unwrap_or_default();
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        !rest[start..].starts_with(b"xref")
    }
}

/// The file written: original plus update, and where each object's body begins.
pub(crate) struct Written {
    pub bytes: Vec<u8>,
    pub offsets: Vec<(ObjectId, usize)>,
}

fn io(e: std::io::Error) -> Error {
    Error::Other(format!("the update cannot be written: {e}"))
}

/// Appends `objects` to `prev`. `free_id` is an object number unused in the original and in
/// `objects`, for the cross-reference stream if one is written.
pub(crate) fn write(
    prev: &Previous,
    objects: Vec<(ObjectId, Body)>,
    free_id: u32,
) -> Result<Written, Error> {
    let mut out = Vec::with_capacity(prev.bytes.len() + 64 * 1024);
    out.extend_from_slice(prev.bytes);
    if !matches!(prev.bytes.last(), Some(b'\n' | b'\r')) {
        out.push(b'\n');
    }
    let mut entries: Vec<(ObjectId, usize)> = Vec::with_capacity(objects.len() + 1);
    let mut offsets = Vec::with_capacity(objects.len());
    for (id, body) in objects {
        entries.push((id, out.len()));
        writeln!(out, "{} {} obj", id.0, id.1).map_err(io)?;
        offsets.push((id, out.len()));
        match body {
            Body::Object(object) => Writer::write_object(&mut out, &object)
                .map_err(|e| Error::Other(format!("object {} cannot be written: {e}", id.0)))?,
            Body::Raw(bytes) => out.extend_from_slice(&bytes),
        }
        out.extend_from_slice(b"\nendobj\n");
    }

    let mut trailer = Dictionary::new();
    let prev_size = prev
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .unwrap_or(0)
        .max(0);
    let stream = prev.xref_is_stream();
    if stream {
        entries.push(((free_id, 0), out.len()));
    }
    let highest = entries
        .iter()
        .map(|(id, _)| i64::from(id.0))
        .max()
        .unwrap_or(0);
    trailer.set("Size", Object::Integer(prev_size.max(highest + 1)));
    for key in [&b"Root"[..], b"Info", b"ID"] {
        if let Ok(value) = prev.trailer.get(key) {
            trailer.set(key, value.clone());
        }
    }
    trailer.set("Prev", Object::Integer(prev.xref_start as i64));
    entries.sort_by_key(|(id, _)| id.0);
    let xref_start = out.len();

    if stream {
        write_xref_stream(&mut out, trailer, &entries, free_id)?;
    } else {
        write_xref_table(&mut out, trailer, &entries)?;
    }
    write!(out, "startxref\n{xref_start}\n%%EOF\n").map_err(io)?;
    Ok(Written {
        bytes: out,
        offsets,
    })
}

/// Runs of consecutive object numbers: `(first, count)`.
fn runs(entries: &[(ObjectId, usize)]) -> Vec<(u32, usize)> {
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for (id, _) in entries {
        match runs.last_mut() {
            Some((first, count)) if *first as usize + *count == id.0 as usize => *count += 1,
            _ => runs.push((id.0, 1)),
        }
    }
    runs
}

fn write_xref_table(
    out: &mut Vec<u8>,
    trailer: Dictionary,
    entries: &[(ObjectId, usize)],
) -> Result<(), Error> {
    out.extend_from_slice(b"xref\n");
    let mut rest = entries;
    for (first, count) in runs(entries) {
        writeln!(out, "{first} {count}").map_err(io)?;
        let (run, tail) = rest.split_at(count);
        for ((_, generation), offset) in run {
            write!(out, "{offset:010} {generation:05} n\r\n").map_err(io)?;
        }
        rest = tail;
    }
    out.extend_from_slice(b"trailer\n");
    Writer::write_object(out, &Object::Dictionary(trailer))
        .map_err(|e| Error::Other(format!("the trailer cannot be written: {e}")))?;
    out.push(b'\n');
    Ok(())
}

fn write_xref_stream(
    out: &mut Vec<u8>,
    mut dict: Dictionary,
    entries: &[(ObjectId, usize)],
    id: u32,
) -> Result<(), Error> {
    let mut data = Vec::with_capacity(entries.len() * 7);
    for ((_, generation), offset) in entries {
        let offset = u32::try_from(*offset)
            .map_err(|_| Error::Other("the signed file would exceed 4 GB".into()))?;
        data.push(1);
        data.extend_from_slice(&offset.to_be_bytes());
        data.extend_from_slice(&generation.to_be_bytes());
    }
    let index = runs(entries)
        .into_iter()
        .flat_map(|(first, count)| [Object::Integer(first.into()), Object::Integer(count as i64)])
        .collect::<Vec<_>>();
    dict.set("Type", Object::Name(b"XRef".to_vec()));
    dict.set("Index", Object::Array(index));
    dict.set("W", Object::Array(vec![1.into(), 4.into(), 2.into()]));
    dict.set("Length", Object::Integer(data.len() as i64));
    writeln!(out, "{id} 0 obj").map_err(io)?;
    Writer::write_object(out, &Object::Dictionary(dict))
        .map_err(|e| Error::Other(format!("the cross-reference stream cannot be written: {e}")))?;
    out.extend_from_slice(b"\nstream\n");
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    Ok(())
}
