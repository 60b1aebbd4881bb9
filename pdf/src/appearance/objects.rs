//! Small helpers to add objects to the update being written.

use std::io::Write;

use lopdf::{Object, ObjectId};

use crate::Error;

/// `data` compressed for `/FlateDecode`.
pub fn deflate(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data)
        .and_then(|()| z.finish())
        .map_err(|e| Error::Appearance(format!("compressing a stream: {e}")))
}

/// Adds `object` to `new` as a new object.
pub fn add(new: &mut lopdf::Document, object: impl Into<Object>) -> Result<ObjectId, Error> {
    new.try_add_object(object)
        .map_err(|e| Error::Appearance(format!("adding an object: {e}")))
}
