//! A PNG picture (a signature or a seal) as a PDF image XObject; its transparency becomes a
//! soft mask so the document shows through.

use std::io::Cursor;

use lopdf::{Dictionary, Object, ObjectId, Stream};

use super::objects::{add, deflate};
use crate::Error;

/// The largest side accepted, in pixels: a seal scanned at 1200 dpi stays well below it.
const MAX_SIDE: u32 = 8000;

/// A decoded picture: 8-bit colour samples (gray or RGB) and, when some pixel is not opaque,
/// an 8-bit alpha plane.
#[derive(Debug)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    gray: bool,
    color: Vec<u8>,
    alpha: Option<Vec<u8>>,
}

impl Picture {
    /// Decodes `png` (any colour type and depth: palette and gray are expanded, 16-bit
    /// samples reduced to 8). `what` names the picture in errors ("the seal image").
    pub fn decode(png: &[u8], what: &str) -> Result<Picture, Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Appearance(format!("{what} is not a usable PNG: {e}"))
        };
        let mut decoder = png::Decoder::new(Cursor::new(png));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
        let (w, h) = (reader.info().width, reader.info().height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(bad(&format!(
                "{w}×{h} pixels (each side must be 1 to {MAX_SIDE})"
            )));
        }
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| bad(&"the picture is too large"))?;
        let mut buf = vec![0; size];
        let frame = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
        buf.truncate(frame.buffer_size());
        let (channels, gray) = match frame.color_type {
            png::ColorType::Grayscale => (1, true),
            png::ColorType::GrayscaleAlpha => (2, true),
            png::ColorType::Rgb => (3, false),
            png::ColorType::Rgba => (4, false),
            png::ColorType::Indexed => return Err(bad(&"the palette was not expanded")),
        };
        if frame.bit_depth != png::BitDepth::Eight {
            return Err(bad(&"the samples were not reduced to 8 bits"));
        }
        let color_channels = if gray { 1 } else { 3 };
        let has_alpha = channels > color_channels;
        let pixels = (w as usize) * (h as usize);
        let mut color = Vec::with_capacity(pixels * color_channels);
        let mut alpha = Vec::with_capacity(if has_alpha { pixels } else { 0 });
        for row in buf.chunks_exact(frame.line_size).take(h as usize) {
            for px in row[..w as usize * channels].chunks_exact(channels) {
                color.extend_from_slice(&px[..color_channels]);
                if has_alpha {
                    alpha.push(px[color_channels]);
                }
            }
        }
        if color.len() != pixels * color_channels {
            return Err(bad(&"the picture data is truncated"));
        }
        let alpha = (has_alpha && alpha.iter().any(|&a| a != 255)).then_some(alpha);
        Ok(Picture {
            width: w,
            height: h,
            gray,
            color,
            alpha,
        })
    }

    /// Adds the picture (and its soft mask) to `new`; the id is the image XObject's.
    pub fn embed(&self, new: &mut lopdf::Document) -> Result<ObjectId, Error> {
        let mut dict = image_dict(
            self.width,
            self.height,
            if self.gray { "DeviceGray" } else { "DeviceRGB" },
        );
        if let Some(alpha) = &self.alpha {
            let mask = Stream::new(
                image_dict(self.width, self.height, "DeviceGray"),
                deflate(alpha)?,
            );
            dict.set("SMask", add(new, mask)?);
        }
        add(new, Stream::new(dict, deflate(&self.color)?))
    }
}

fn image_dict(width: u32, height: u32, space: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"XObject".to_vec()));
    d.set("Subtype", Object::Name(b"Image".to_vec()));
    d.set("Width", i64::from(width));
    d.set("Height", i64::from(height));
    d.set("ColorSpace", Object::Name(space.as_bytes().to_vec()));
    d.set("BitsPerComponent", 8);
    d.set("Filter", Object::Name(b"FlateDecode".to_vec()));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
        palette: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if let Some(p) = palette {
            e.set_palette(p.to_vec());
        }
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn rgba_splits_into_rgb_and_alpha() {
        let data = [255, 0, 0, 0, 0, 0, 255, 128];
        let p = Picture::decode(
            &encode(
                2,
                1,
                png::ColorType::Rgba,
                png::BitDepth::Eight,
                &data,
                None,
            ),
            "x",
        )
        .unwrap();
        assert!(!p.gray);
        assert_eq!(p.color, vec![255, 0, 0, 0, 0, 255]);
        assert_eq!(p.alpha, Some(vec![0, 128]));
    }

    #[test]
    fn opaque_pictures_have_no_mask_and_palettes_expand() {
        let palette = [10, 20, 30, 200, 100, 0];
        // Two pixels at 1 bit per index: indices 1 and 0.
        let p = Picture::decode(
            &encode(
                2,
                1,
                png::ColorType::Indexed,
                png::BitDepth::One,
                &[0b1000_0000],
                Some(&palette),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(p.color, vec![200, 100, 0, 10, 20, 30]);
        assert_eq!(p.alpha, None);
        let g = Picture::decode(
            &encode(
                1,
                2,
                png::ColorType::GrayscaleAlpha,
                png::BitDepth::Eight,
                &[7, 255, 9, 0],
                None,
            ),
            "x",
        )
        .unwrap();
        assert!(g.gray);
        assert_eq!((g.color, g.alpha), (vec![7, 9], Some(vec![255, 0])));
    }

    #[test]
    fn broken_images_are_refused_by_name() {
        let good = encode(
            1,
            1,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            &[1, 2, 3],
            None,
        );
        for bad in [&b"not a png"[..], &good[..good.len() - 20]] {
            let e = Picture::decode(bad, "the seal image")
                .unwrap_err()
                .to_string();
            assert!(e.contains("the seal image is not a usable PNG"), "{e}");
        }
    }

    #[test]
    fn embedding_adds_image_and_mask() {
        let data = [255, 0, 0, 0];
        let p = Picture::decode(
            &encode(
                1,
                1,
                png::ColorType::Rgba,
                png::BitDepth::Eight,
                &data,
                None,
            ),
            "x",
        )
        .unwrap();
        let mut doc = lopdf::Document::with_version("1.7");
        let id = p.embed(&mut doc).unwrap();
        let img = doc.get_object(id).unwrap().as_stream().unwrap();
        let mask = img.dict.get(b"SMask").unwrap().as_reference().unwrap();
        let mask = doc.get_object(mask).unwrap().as_stream().unwrap();
        assert_eq!(
            mask.dict.get(b"ColorSpace").unwrap().as_name().unwrap(),
            b"DeviceGray"
        );
        assert_eq!(mask.decompressed_content().unwrap(), vec![0]);
        assert_eq!(img.decompressed_content().unwrap(), vec![255, 0, 0]);
    }
}
