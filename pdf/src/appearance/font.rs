//! The text font of appearances: Liberation Serif (Times New Roman's metrics, full Vietnamese
//! coverage), embedded as a subset Type0/CIDFontType2 font with Identity-H encoding, `/W`
//! widths and a `/ToUnicode` CMap so the text can be extracted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lopdf::{Dictionary, Object, ObjectId, Stream};
use sha2::{Digest, Sha256};
use subsetter::GlyphRemapper;
use unicode_normalization::UnicodeNormalization;

use super::objects::{add, deflate};
use crate::Error;

/// The environment variable naming a TrueType file to use instead of the known locations.
pub const FONT_ENV: &str = "KYSO_FONT";

/// Where distributions install Liberation Serif 2 (Debian's `fonts-liberation2`, and
/// `fonts-liberation` from Debian 13; Fedora; Arch), then DejaVu Serif as a last resort.
/// Liberation Serif 1 has no Vietnamese letters, so a file without them is passed over.
const KNOWN_LOCATIONS: &[&str] = &[
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/liberation-serif/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/TTF/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/dejavu-serif-fonts/DejaVuSerif.ttf",
    "/usr/share/fonts/TTF/DejaVuSerif.ttf",
];

/// Letters a font must have to write Vietnamese.
const VIETNAMESE_PROBE: &str = "ẢẠẦẩẫậĂắằẳẵặĐđÊếềểễệƠờởỡợƯừửữựỳỵỷỹ";

/// A TrueType font being used: every glyph text asks for is recorded, and the subset holding
/// exactly those glyphs is written by [`Font::embed`]. Glyph ids of the subset serve as CIDs.
pub struct Font {
    data: Vec<u8>,
    path: PathBuf,
    units_per_em: f32,
    remapper: GlyphRemapper,
    /// Subset glyph id → the text it stands for, and its advance in 1/1000 em.
    used: BTreeMap<u16, (char, u16)>,
}

impl Font {
    /// The font at `configured`, else at `$KYSO_FONT`, else at the first known location.
    /// A path that is given but unusable is an error, never silently replaced.
    pub fn load(configured: Option<&Path>) -> Result<Font, Error> {
        let from_env = std::env::var_os(FONT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(path) = configured.map(Path::to_path_buf).or(from_env) {
            let data = std::fs::read(&path).map_err(|e| {
                Error::Appearance(format!("cannot read the font {}: {e}", path.display()))
            })?;
            return Font::from_bytes(data, path);
        }
        for path in KNOWN_LOCATIONS.iter().map(PathBuf::from) {
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            match Font::from_bytes(data, path) {
                Ok(font) if font.width(VIETNAMESE_PROBE, 1.0).is_ok() => return Ok(font),
                _ => continue,
            }
        }
        Err(Error::Appearance(format!(
            "no font with Vietnamese letters for the signature's text: install Liberation Serif 2 \
             (Debian: fonts-liberation2) or name a TrueType file in {FONT_ENV} or in \
             [documents.layout] font"
        )))
    }

    pub fn from_bytes(data: Vec<u8>, path: PathBuf) -> Result<Font, Error> {
        let face = ttf_parser::Face::parse(&data, 0).map_err(|e| {
            Error::Appearance(format!("{} is not a TrueType font: {e}", path.display()))
        })?;
        let units_per_em = f32::from(face.units_per_em());
        let mut remapper = GlyphRemapper::new();
        remapper.remap(0);
        Ok(Font {
            data,
            path,
            units_per_em,
            remapper,
            used: BTreeMap::new(),
        })
    }

    fn face(&self) -> ttf_parser::Face<'_> {
        ttf_parser::Face::parse(&self.data, 0).expect("parsed when loaded")
    }

    fn glyph(&self, face: &ttf_parser::Face<'_>, c: char) -> Result<ttf_parser::GlyphId, Error> {
        face.glyph_index(c).ok_or_else(|| {
            Error::Appearance(format!(
                "the font {} has no glyph for {c:?}",
                self.path.display()
            ))
        })
    }

    /// The width of `text` set at `size` points.
    pub fn width(&self, text: &str, size: f32) -> Result<f32, Error> {
        let face = self.face();
        let mut units = 0f32;
        for c in text.nfc() {
            let g = self.glyph(&face, c)?;
            units += f32::from(face.glyph_hor_advance(g).unwrap_or(0));
        }
        Ok(units * size / self.units_per_em)
    }

    /// The height above the baseline of capitals, as a fraction of the size.
    pub fn cap_height(&self) -> f32 {
        let face = self.face();
        f32::from(face.capital_height().unwrap_or(face.ascender())) / self.units_per_em
    }

    /// `text` as a string of two-byte CIDs, its glyphs recorded for the subset. Text is set
    /// composed (NFC): Vietnamese typed with combining marks gets the font's precomposed
    /// letters, which carry their marks in the right place.
    pub fn encode(&mut self, text: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(text.len() * 2);
        let glyphs = {
            let face = self.face();
            let mut glyphs = Vec::new();
            for c in text.nfc() {
                let g = self.glyph(&face, c)?;
                let advance = f32::from(face.glyph_hor_advance(g).unwrap_or(0));
                glyphs.push((
                    c,
                    g.0,
                    (advance * 1000.0 / self.units_per_em).round() as u16,
                ));
            }
            glyphs
        };
        for (c, old, advance) in glyphs {
            let cid = self.remapper.remap(old);
            self.used.entry(cid).or_insert((c, advance));
            out.extend_from_slice(&cid.to_be_bytes());
        }
        Ok(out)
    }

    /// Writes the font (Type0, its CIDFont, descriptor, subset file and ToUnicode CMap) as
    /// the object `id`, reserved in `new` beforehand.
    pub fn embed(&self, new: &mut lopdf::Document, id: ObjectId) -> Result<(), Error> {
        let face = self.face();
        let subset = subsetter::subset(&self.data, 0, &self.remapper).map_err(|e| {
            Error::Appearance(format!(
                "cannot subset the font {}: {e}",
                self.path.display()
            ))
        })?;
        let ps_name = face
            .names()
            .into_iter()
            .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME && n.is_unicode())
            .and_then(|n| n.to_string())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "LiberationSerif".to_owned());
        let base_font = format!("{}+{ps_name}", self.subset_tag());
        let scale = |v: i16| (f32::from(v) * 1000.0 / self.units_per_em).round() as i64;

        let mut file_dict = Dictionary::new();
        file_dict.set("Length1", subset.len() as i64);
        file_dict.set("Filter", name("FlateDecode"));
        let file = add(new, Stream::new(file_dict, deflate(&subset)?))?;

        let bbox = face.global_bounding_box();
        let mut descriptor = Dictionary::new();
        descriptor.set("Type", name("FontDescriptor"));
        descriptor.set("FontName", name(&base_font));
        // Serif (2) and symbolic (4): a CID font's glyphs are outside the standard Latin set.
        descriptor.set("Flags", 6);
        descriptor.set(
            "FontBBox",
            vec![bbox.x_min, bbox.y_min, bbox.x_max, bbox.y_max]
                .into_iter()
                .map(|v| Object::Integer(scale(v)))
                .collect::<Vec<_>>(),
        );
        descriptor.set("ItalicAngle", 0);
        descriptor.set("Ascent", scale(face.ascender()));
        descriptor.set("Descent", scale(face.descender()));
        descriptor.set(
            "CapHeight",
            scale(face.capital_height().unwrap_or(face.ascender())),
        );
        descriptor.set("StemV", 80);
        descriptor.set("FontFile2", file);
        let descriptor = add(new, descriptor)?;

        let mut system_info = Dictionary::new();
        system_info.set("Registry", Object::string_literal("Adobe"));
        system_info.set("Ordering", Object::string_literal("Identity"));
        system_info.set("Supplement", 0);
        let mut widths = Vec::new();
        for (cid, (_, advance)) in &self.used {
            widths.push(Object::Integer(i64::from(*cid)));
            widths.push(Object::Array(vec![Object::Integer(i64::from(*advance))]));
        }
        let mut cid_font = Dictionary::new();
        cid_font.set("Type", name("Font"));
        cid_font.set("Subtype", name("CIDFontType2"));
        cid_font.set("BaseFont", name(&base_font));
        cid_font.set("CIDSystemInfo", system_info);
        cid_font.set("FontDescriptor", descriptor);
        cid_font.set("DW", 1000);
        cid_font.set("W", widths);
        cid_font.set("CIDToGIDMap", name("Identity"));
        let cid_font = add(new, cid_font)?;

        let to_unicode = add(
            new,
            Stream::new(Dictionary::new(), self.to_unicode().into_bytes()),
        )?;
        let mut font = Dictionary::new();
        font.set("Type", name("Font"));
        font.set("Subtype", name("Type0"));
        font.set("BaseFont", name(&base_font));
        font.set("Encoding", name("Identity-H"));
        font.set("DescendantFonts", vec![Object::Reference(cid_font)]);
        font.set("ToUnicode", to_unicode);
        new.objects.insert(id, Object::Dictionary(font));
        Ok(())
    }

    /// Six capitals naming this subset, the same for the same glyphs.
    fn subset_tag(&self) -> String {
        let mut h = Sha256::new();
        for cid in self.remapper.remapped_gids() {
            h.update(cid.to_be_bytes());
        }
        h.finalize()[..6]
            .iter()
            .map(|b| char::from(b'A' + b % 26))
            .collect()
    }

    fn to_unicode(&self) -> String {
        let mut s = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        let entries: Vec<_> = self.used.iter().collect();
        for chunk in entries.chunks(100) {
            let _ = writeln!(s, "{} beginbfchar", chunk.len());
            for (cid, (c, _)) in chunk {
                let mut units = [0u16; 2];
                let hex: String = c
                    .encode_utf16(&mut units)
                    .iter()
                    .map(|u| format!("{u:04X}"))
                    .collect();
                let _ = writeln!(s, "<{cid:04X}> <{hex}>");
            }
            s.push_str("endbfchar\n");
        }
        s.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        s
    }
}

fn name(n: &str) -> Object {
    Object::Name(n.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liberation() -> Font {
        let font =
            Font::load(None).expect("a Vietnamese font is installed (Debian: fonts-liberation2)");
        assert!(
            font.path.ends_with("LiberationSerif-Regular.ttf"),
            "{}",
            font.path.display()
        );
        font
    }

    #[test]
    fn encoding_records_glyphs_and_unicode() {
        let mut f = liberation();
        let a = f.encode("Nguyễn").unwrap();
        let b = f.encode("ễN").unwrap();
        assert_eq!(a.len(), 12);
        // The same letters get the same CIDs; .notdef keeps CID 0.
        assert_eq!(&b[..2], &a[8..10]);
        assert_eq!(&b[2..], &a[..2]);
        assert!(!a.chunks(2).any(|c| c == [0, 0]));
        let cmap = f.to_unicode();
        assert!(cmap.contains("<1EC5>"), "{cmap}");
        assert!(f.width("Nguyễn", 10.0).unwrap() > 20.0);
        // Decomposed input ("e" + circumflex + tilde) is set as the precomposed letter.
        assert_eq!(f.encode("Nguye\u{302}\u{303}n").unwrap(), a);
        assert_eq!(f.width("", 10.0).unwrap(), 0.0);
    }

    #[test]
    fn embedded_subset_is_small_and_named() {
        let mut f = liberation();
        f.encode("BẢN SAO ĐIỆN TỬ").unwrap();
        let mut doc = lopdf::Document::with_version("1.7");
        let id = doc.new_object_id();
        f.embed(&mut doc, id).unwrap();
        let font = doc.get_dictionary(id).unwrap();
        let base = font.get(b"BaseFont").unwrap().as_name().unwrap();
        assert_eq!(base[6], b'+');
        assert!(base[..6].iter().all(u8::is_ascii_uppercase));
        let file = doc
            .objects
            .values()
            .filter_map(|o| o.as_stream().ok())
            .find(|s| s.dict.has(b"Length1"))
            .unwrap();
        let len = file.dict.get(b"Length1").unwrap().as_i64().unwrap();
        assert!(len < 40_000, "subset of {len} bytes");
    }

    #[test]
    fn missing_glyphs_and_bad_files_are_errors() {
        let f = liberation();
        assert!(f
            .width("\u{4E2D}", 10.0)
            .unwrap_err()
            .to_string()
            .contains("no glyph"));
        let e = Font::from_bytes(b"junk".to_vec(), "x.ttf".into())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a TrueType font"));
        let e = Font::load(Some(Path::new("/nonexistent/font.ttf")))
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot read the font"));
    }
}
