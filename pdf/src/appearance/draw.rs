//! Drawing one appearance: a canvas of text lines, pictures and frames that becomes a form
//! XObject.

use std::fmt::Write as _;

use lopdf::{Dictionary, Object, ObjectId, Stream};

use super::font::Font;
use super::objects::{add, deflate};
use crate::Error;

/// The resource name of the text font in every appearance.
const FONT_RESOURCE: &str = "F1";
/// Line height as a multiple of the font size, and the baseline's depth in the line.
const LEADING: f32 = 1.2;
const BASELINE: f32 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rgb(pub f32, pub f32, pub f32);

pub const BLACK: Rgb = Rgb(0.0, 0.0, 0.0);
/// The red of a received-document stamp.
pub const STAMP_RED: Rgb = Rgb(0.75, 0.05, 0.05);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// A line of text at a size in points.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub size: f32,
}

impl Line {
    pub fn new(text: impl Into<String>, size: f32) -> Line {
        Line {
            text: text.into(),
            size,
        }
    }
}

/// The width and height in points of `lines` set with `pad` points around them.
pub fn block_size(font: &Font, lines: &[Line], pad: f32) -> Result<(f32, f32), Error> {
    let mut w = 0f32;
    for l in lines {
        w = w.max(font.width(&l.text, l.size)?);
    }
    let h: f32 = lines.iter().map(|l| l.size * LEADING).sum();
    Ok((w + 2.0 * pad, h + 2.0 * pad))
}

/// `text` broken at spaces (inside a word only when the word alone is too wide) into lines
/// no wider than `width` points at `size`.
pub fn wrap(font: &Font, text: &str, size: f32, width: f32) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if font.width(&candidate, size)? <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        for c in word.chars() {
            current.push(c);
            if font.width(&current, size)? > width && current.chars().count() > 1 {
                current.pop();
                lines.push(std::mem::replace(&mut current, c.to_string()));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    Ok(lines)
}

/// `paragraphs` wrapped to `w` points at the largest size from `max_size` down to 5 points
/// whose lines fit in `w × h` with `pad` around them (at 5 points, whatever it takes).
pub fn fit(
    font: &Font,
    paragraphs: &[String],
    w: f32,
    h: f32,
    max_size: f32,
    pad: f32,
) -> Result<Vec<Line>, Error> {
    let mut size = max_size;
    loop {
        let mut lines = Vec::new();
        for p in paragraphs {
            for l in wrap(font, p, size, w - 2.0 * pad)? {
                lines.push(Line::new(l, size));
            }
        }
        if block_size(font, &lines, pad)?.1 <= h || size <= 5.0 {
            return Ok(lines);
        }
        size = (size - 0.5).max(5.0);
    }
}

/// The content of one appearance, `w × h` points, drawn upright from its lower left corner.
#[derive(Debug)]
pub struct Canvas {
    pub w: f32,
    pub h: f32,
    ops: String,
    images: Vec<ObjectId>,
    has_text: bool,
}

impl Canvas {
    pub fn new(w: f32, h: f32) -> Canvas {
        Canvas {
            w,
            h,
            ops: String::new(),
            images: Vec::new(),
            has_text: false,
        }
    }

    pub fn has_text(&self) -> bool {
        self.has_text
    }

    /// The image XObject `id` stretched over the box `x, y, w, h`.
    pub fn image(&mut self, id: ObjectId, x: f32, y: f32, w: f32, h: f32) {
        let name = self.images.len();
        self.images.push(id);
        let _ = writeln!(
            self.ops,
            "q {} 0 0 {} {} {} cm /Im{name} Do Q",
            n(w),
            n(h),
            n(x),
            n(y)
        );
    }

    /// A rectangle's outline, `width` points thick, inside the box `x, y, w, h`.
    pub fn frame(&mut self, x: f32, y: f32, w: f32, h: f32, width: f32, color: Rgb) {
        let half = width / 2.0;
        let _ = writeln!(
            self.ops,
            "q {} {} {} RG {} w {} {} {} {} re S Q",
            n(color.0),
            n(color.1),
            n(color.2),
            n(width),
            n(x + half),
            n(y + half),
            n(w - width),
            n(h - width)
        );
    }

    /// `lines` from the top of the canvas down, `pad` points from its edges.
    pub fn text(
        &mut self,
        font: &mut Font,
        lines: &[Line],
        pad: f32,
        align: Align,
        color: Rgb,
    ) -> Result<(), Error> {
        let mut top = self.h - pad;
        let _ = writeln!(
            self.ops,
            "BT {} {} {} rg",
            n(color.0),
            n(color.1),
            n(color.2)
        );
        for l in lines {
            let width = font.width(&l.text, l.size)?;
            let x = match align {
                Align::Left => pad,
                Align::Center => (self.w - width) / 2.0,
                Align::Right => self.w - pad - width,
            };
            let y = top - l.size * BASELINE;
            top -= l.size * LEADING;
            let hex: String = font
                .encode(&l.text)?
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            let _ = writeln!(
                self.ops,
                "/{FONT_RESOURCE} {} Tf 1 0 0 1 {} {} Tm <{hex}> Tj",
                n(l.size),
                n(x),
                n(y)
            );
        }
        self.ops.push_str("ET\n");
        self.has_text = true;
        Ok(())
    }

    /// The canvas as a form XObject in `new`, turned by `matrix`; `font` is the text font's
    /// object (needed when the canvas has text).
    pub fn into_form(
        self,
        new: &mut lopdf::Document,
        font: Option<ObjectId>,
        matrix: [f32; 6],
    ) -> Result<ObjectId, Error> {
        let mut resources = Dictionary::new();
        if self.has_text {
            let font =
                font.ok_or_else(|| Error::Appearance("the text font was not embedded".into()))?;
            let mut fonts = Dictionary::new();
            fonts.set(FONT_RESOURCE, font);
            resources.set("Font", fonts);
        }
        if !self.images.is_empty() {
            let mut images = Dictionary::new();
            for (i, id) in self.images.iter().enumerate() {
                images.set(format!("Im{i}"), *id);
            }
            resources.set("XObject", images);
        }
        let mut dict = Dictionary::new();
        dict.set("Type", Object::Name(b"XObject".to_vec()));
        dict.set("Subtype", Object::Name(b"Form".to_vec()));
        dict.set(
            "BBox",
            vec![
                0.into(),
                0.into(),
                Object::Real(self.w),
                Object::Real(self.h),
            ],
        );
        dict.set(
            "Matrix",
            matrix.iter().map(|&v| Object::Real(v)).collect::<Vec<_>>(),
        );
        dict.set("Resources", resources);
        dict.set("Filter", Object::Name(b"FlateDecode".to_vec()));
        add(new, Stream::new(dict, deflate(self.ops.as_bytes())?))
    }
}

/// A number for a content stream: at most three decimals, no exponent.
fn n(v: f32) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain() {
        assert_eq!(n(1.0), "1");
        assert_eq!(n(0.5), "0.5");
        assert_eq!(n(-0.0001), "0");
        assert_eq!(n(12.34567), "12.346");
    }
}
