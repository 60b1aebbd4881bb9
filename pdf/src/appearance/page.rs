//! A page as the reader sees it: its visible box (the CropBox, else the MediaBox) turned by
//! `/Rotate`. Appearances are placed in this visible space, so "lower left" and "top right"
//! mean what they look like on screen, whatever the page's origin and rotation.

use lopdf::{Dictionary, Object, ObjectId};

use crate::Error;

/// Points per millimetre.
pub const PT_PER_MM: f32 = 72.0 / 25.4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub id: ObjectId,
    /// The visible box in default user space, `[x1 y1 x2 y2]` with x1 < x2, y1 < y2.
    visible: [f32; 4],
    /// Clockwise quarter turns: 0 to 3.
    quarter_turns: u8,
}

impl Page {
    /// Page `number` of `doc`, counted from 1, or from the end when negative (-1 is the last).
    pub fn find(doc: &lopdf::Document, number: i32) -> Result<Page, Error> {
        let pages = doc.get_pages();
        let count = pages.len() as i64;
        let n = i64::from(number);
        let index = if n < 0 { count + n + 1 } else { n };
        let id = u32::try_from(index)
            .ok()
            .and_then(|i| pages.get(&i))
            .copied()
            .ok_or_else(|| {
                Error::Appearance(format!(
                    "page {number} does not exist: the document has {count}"
                ))
            })?;
        let media = inherited(doc, id, b"MediaBox")
            .map(|o| rectangle(doc, o))
            .transpose()?
            .ok_or_else(|| Error::Damaged(format!("page {index} has no MediaBox")))?;
        let visible = match inherited(doc, id, b"CropBox").map(|o| rectangle(doc, o)) {
            Some(Ok(crop)) => intersect(crop, media).unwrap_or(media),
            _ => media,
        };
        let rotate = inherited(doc, id, b"Rotate")
            .and_then(|o| doc.dereference(o).ok())
            .and_then(|(_, o)| o.as_i64().ok())
            .unwrap_or(0);
        Ok(Page {
            id,
            visible,
            quarter_turns: (rotate.rem_euclid(360) / 90) as u8,
        })
    }

    /// The visible width and height in points.
    pub fn size(&self) -> (f32, f32) {
        let (w, h) = (
            self.visible[2] - self.visible[0],
            self.visible[3] - self.visible[1],
        );
        if self.quarter_turns % 2 == 1 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The box `x, y, w, h` of visible space (points from the visible lower left) as a
    /// rectangle of default user space, and the form matrix that turns a drawing made upright
    /// in a `w × h` box so it reads upright on the rotated page.
    pub fn place(&self, x: f32, y: f32, w: f32, h: f32) -> ([f32; 4], [f32; 6]) {
        let [x0, y0, x1, y1] = self.visible;
        // The visible point (u, v) in user space.
        let user = |u: f32, v: f32| match self.quarter_turns {
            1 => (x1 - v, y0 + u),
            2 => (x1 - u, y1 - v),
            3 => (x0 + v, y1 - u),
            _ => (x0 + u, y0 + v),
        };
        let (ax, ay) = user(x, y);
        let (bx, by) = user(x + w, y + h);
        let rect = [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)];
        let matrix = match self.quarter_turns {
            1 => [0.0, 1.0, -1.0, 0.0, 0.0, 0.0],
            2 => [-1.0, 0.0, 0.0, -1.0, 0.0, 0.0],
            3 => [0.0, -1.0, 1.0, 0.0, 0.0, 0.0],
            _ => [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        };
        (rect, matrix)
    }
}

/// `key` of the page or of the nearest ancestor that has it.
fn inherited<'a>(doc: &'a lopdf::Document, page: ObjectId, key: &[u8]) -> Option<&'a Object> {
    let mut node: &Dictionary = doc.get_dictionary(page).ok()?;
    for _ in 0..64 {
        if let Ok(v) = node.get(key) {
            return Some(v);
        }
        let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

fn rectangle(doc: &lopdf::Document, o: &Object) -> Result<[f32; 4], Error> {
    let bad = || Error::Damaged("a page box is not a rectangle".into());
    let (_, o) = doc.dereference(o).map_err(|_| bad())?;
    let a = o.as_array().map_err(|_| bad())?;
    if a.len() != 4 {
        return Err(bad());
    }
    let mut v = [0f32; 4];
    for (slot, item) in v.iter_mut().zip(a) {
        let (_, item) = doc.dereference(item).map_err(|_| bad())?;
        *slot = item.as_float().map_err(|_| bad())?;
    }
    let r = [
        v[0].min(v[2]),
        v[1].min(v[3]),
        v[0].max(v[2]),
        v[1].max(v[3]),
    ];
    if r[2] - r[0] < 1.0 || r[3] - r[1] < 1.0 || r.iter().any(|c| !c.is_finite()) {
        return Err(bad());
    }
    Ok(r)
}

fn intersect(a: [f32; 4], b: [f32; 4]) -> Option<[f32; 4]> {
    let r = [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ];
    (r[2] - r[0] >= 1.0 && r[3] - r[1] >= 1.0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::dictionary;

    fn doc_with(page: Dictionary, pages_extra: Dictionary) -> lopdf::Document {
        let mut doc = lopdf::Document::with_version("1.7");
        let pages_id = doc.new_object_id();
        let mut page = page;
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", pages_id);
        let page_id = doc.add_object(page);
        let mut pages =
            dictionary! {"Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1};
        for (k, v) in pages_extra.iter() {
            pages.set(k.clone(), v.clone());
        }
        doc.objects.insert(pages_id, pages.into());
        let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog);
        doc
    }

    fn boxed(v: [f32; 4]) -> Object {
        Object::Array(v.iter().map(|&x| Object::Real(x)).collect())
    }

    #[test]
    fn inherited_box_offset_crop_and_rotation() {
        let doc = doc_with(
            dictionary! {"CropBox" => boxed([100.0, 200.0, 400.0, 800.0]), "Rotate" => 90},
            dictionary! {"MediaBox" => boxed([50.0, 50.0, 700.0, 900.0])},
        );
        let p = Page::find(&doc, -1).unwrap();
        assert_eq!(p.size(), (600.0, 300.0));
        // The visible lower left of a page turned clockwise is the box's lower right.
        let (rect, m) = p.place(0.0, 0.0, 60.0, 20.0);
        assert_eq!(rect, [380.0, 200.0, 400.0, 260.0]);
        assert_eq!(m, [0.0, 1.0, -1.0, 0.0, 0.0, 0.0]);
        assert_eq!(Page::find(&doc, 1).unwrap(), p);
        assert!(Page::find(&doc, 2).is_err());
        assert!(Page::find(&doc, -2).is_err());
        assert!(Page::find(&doc, 0).is_err());
    }

    #[test]
    fn every_rotation_keeps_the_box_inside_the_page() {
        for (turn, expect) in [
            (0, [10.0, 20.0, 40.0, 30.0]),
            (180, [555.0, 812.0, 585.0, 822.0]),
            (270, [20.0, 802.0, 30.0, 832.0]),
            (-90, [20.0, 802.0, 30.0, 832.0]),
        ] {
            let doc = doc_with(
                dictionary! {"MediaBox" => boxed([0.0, 0.0, 595.0, 842.0]), "Rotate" => turn},
                Dictionary::new(),
            );
            let p = Page::find(&doc, 1).unwrap();
            assert_eq!(p.place(10.0, 20.0, 30.0, 10.0).0, expect, "Rotate {turn}");
        }
    }

    #[test]
    fn missing_or_broken_boxes_are_errors() {
        let doc = doc_with(Dictionary::new(), Dictionary::new());
        assert!(matches!(Page::find(&doc, 1), Err(Error::Damaged(_))));
        let doc = doc_with(
            dictionary! {"MediaBox" => vec![1.into(), 2.into()]},
            Dictionary::new(),
        );
        assert!(matches!(Page::find(&doc, 1), Err(Error::Damaged(_))));
    }
}
