//! The look of a signature on the page, as Decree 30/2020 prescribes it.
//!
//! Each [`Kind`] draws one or more form XObjects, each the normal appearance of one widget of
//! the signature field. Text is set in Liberation Serif (see [`font`]), embedded as a subset;
//! pictures are the configured PNGs. Positions come from [`Layout`], measured on the page as
//! the reader sees it (the CropBox, turned by `/Rotate`); what is not configured falls back to
//! the defaults below, made for A4 documents laid out as Decree 30 Appendix I prescribes
//! (margins 30 mm left, 20 mm right) and scaled to any page size:
//!
//! | what | default place |
//! |---|---|
//! | signature box (`approved`, `comment`, `plain`) | last page, 60 × 25 mm, centred under the right half of the text column, 40 mm above the bottom edge |
//! | seal (`issued`) | [`DEFAULT_SEAL_MM`] across, beside the signature box, covering its left third, centred on it vertically; written as text (no picture), under the box |
//! | document number (`issued`) | page 1, 40 mm from the left, 47 mm below the top (the blank after "Số:") |
//! | issue date (`issued`) | page 1, the right half of the text column, 47 mm below the top (the blank after the place name) |
//! | copy and attachment notes (`copy`, `appendix`) | page 1, top right: 10 mm from the right edge, 5 mm below the top |
//! | received-document stamp (`income`) | page 1, 30 mm from the left, its top 60 mm below the top |

use std::path::PathBuf;

use time::{Date, OffsetDateTime};

mod draw;
pub mod font;
mod image;
mod objects;
mod page;

use draw::{Align, Canvas, Line, Rgb, BLACK, STAMP_RED};
use font::Font;
use image::Picture;
use page::{Page, PT_PER_MM};

/// Which appearance an operation calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// No visible appearance.
    None,
    /// The leader's signature ("ký duyệt").
    Approved,
    /// The organisation's seal when a clerk issues ("đóng dấu phát hành").
    Issued,
    /// A received document ("ký văn bản đến").
    Income,
    /// An attachment.
    Appendix,
    /// An electronic copy ("bản sao điện tử").
    Copy,
    /// An opinion.
    Comment,
    /// A plain signature (`SignPDF`, `SignFile`).
    Plain,
}

/// Everything an appearance may show.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    /// The signer's name (the certificate's CN).
    pub signer: String,
    /// The organisation (the certificate's O, or as configured).
    pub organisation: String,
    /// The signing time, shown in the signer's offset.
    pub time: OffsetDateTime,
    /// `SignIssued`: the document number ("123/BCY-CTSBMTT").
    pub doc_number: Option<String>,
    /// `SignIssued`: the issue date as given (ISO 8601).
    pub issued_date: Option<String>,
    /// `SignCopy`: the kind of copy ("BẢN SAO ĐIỆN TỬ").
    pub copy_kind: Option<String>,
    /// A comment's text (`Comment`).
    pub comment: Option<String>,
    /// The leader's signature image, PNG.
    pub signature_image: Option<Vec<u8>>,
    /// The seal image, PNG.
    pub seal_image: Option<Vec<u8>>,
    pub layout: Layout,
}

/// Where things go. Lengths are in millimetres, from the page's lower left corner; a page
/// number counts from 1, and from the end when negative (-1 is the last page).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Layout {
    /// The signature box of `approved` (and the other signed-by-a-person kinds).
    pub signature: Option<Placement>,
    /// The seal's position (`issued`).
    pub seal: Option<Placement>,
    /// The seal's real diameter; default [`DEFAULT_SEAL_MM`].
    pub seal_size_mm: Option<f32>,
    /// Where the document number is written (`issued`).
    pub doc_number: Option<Placement>,
    /// Where the issue date is written (`issued`).
    pub issued_date: Option<Placement>,
    /// The note of `copy` and `appendix`, and the stamp of `income` (its lower left corner;
    /// the size follows the text).
    pub stamp: Option<Placement>,
    /// A TrueType font for the text instead of Liberation Serif (see [`font::Font::load`]).
    pub font: Option<PathBuf>,
}

/// A box on a page: its lower left corner, and its size (0: the default size).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default = "last_page")]
    pub page: i32,
    pub x_mm: f32,
    pub y_mm: f32,
    #[serde(default)]
    pub width_mm: f32,
    #[serde(default)]
    pub height_mm: f32,
}

fn last_page() -> i32 {
    -1
}

/// A widget annotation to add for the signature field, its appearance already in the document.
///
/// The first widget is the signature's own (the signature box, the seal, the note); `issued`
/// adds the document number and the date as further widgets of the same field, possibly on
/// another page. One widget is best merged with its field in one dictionary. Several are the
/// field's `/Kids` *without* `/Parent`, as pyHanko writes them: poppler 22 takes a kid that
/// names its parent for a field of its own and reports the signature "not signed", while
/// pyHanko 0.38 validates both forms and keeps earlier signatures valid.
#[derive(Debug, Clone)]
pub struct Widget {
    pub page: lopdf::ObjectId,
    /// `[x1 y1 x2 y2]` in the page's default user space.
    pub rect: [f32; 4],
    /// The normal appearance, a form XObject added to the document.
    pub normal: lopdf::ObjectId,
}

/// The diameter of the organisation's seal when `seal_size_mm` is not set: the usual size of
/// an agency's round seal, so the picture prints at its real size; set the organisation's own.
pub const DEFAULT_SEAL_MM: f32 = 36.0;

/// The default signature box, in millimetres.
const SIGNATURE_W_MM: f32 = 60.0;
const SIGNATURE_H_MM: f32 = 25.0;
const SIGNATURE_BOTTOM_MM: f32 = 40.0;
/// Decree 30's margins, left and right, in millimetres.
const MARGIN_LEFT_MM: f32 = 30.0;
const MARGIN_RIGHT_MM: f32 = 20.0;
/// Text sizes: Decree 30's body text, and the notes of copies and attachments.
const BODY_PT: f32 = 13.0;
const NOTE_PT: f32 = 10.0;
/// Space between a text block and the edge of its widget.
const PAD_PT: f32 = 2.0;

/// Draws `req` into new objects of `new` (reading pages from `doc`), and returns the widgets
/// of the signature field. `Kind::None` gives none.
///
/// - `approved`: the leader's signature picture fitted in the signature box; without one, the
///   signer, the organisation and the time as text.
/// - `issued`: the seal picture at its real size overlapping the left third of the signature
///   box (without one, text under the box), plus the document number and the issue date ("ngày 05 tháng 02
///   năm 2019", from `issued_date`, else the signing date) at their places on page 1.
/// - `copy`: top right of page 1, 10 pt black: the kind of copy, the organisation, the signing
///   time (ISO 8601).
/// - `appendix`: the same note for an attachment: its document number (when given), the
///   organisation, the signing time.
/// - `income`: a red framed stamp on page 1: the organisation, "ĐẾN", the number
///   (`doc_number`), the date and time received, the clerk who signed.
/// - `comment`: the comment, then the signer and the time, in the signature box (grown
///   upwards when the comment needs it).
/// - `plain`: the signer, the organisation and the time in the signature box.
///
/// Text is 13 pt (10 pt for notes) upright; Liberation Serif has no italic here.
pub fn build(
    doc: &lopdf::Document,
    new: &mut lopdf::Document,
    req: &Request,
) -> Result<Vec<Widget>, crate::Error> {
    if req.kind == Kind::None {
        return Ok(Vec::new());
    }
    let mut painter = Painter {
        doc,
        new,
        req,
        font: None,
        drawings: Vec::new(),
    };
    match req.kind {
        Kind::None => {}
        Kind::Approved => painter.approved()?,
        Kind::Issued => painter.issued()?,
        Kind::Copy => {
            let lines = [
                req.copy_kind
                    .clone()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "BẢN SAO ĐIỆN TỬ".to_owned()),
                req.organisation.clone(),
                iso_time(req.time)?,
            ];
            painter.note(&lines)?
        }
        Kind::Appendix => {
            let mut lines: Vec<String> = req
                .doc_number
                .iter()
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .collect();
            lines.push(req.organisation.clone());
            lines.push(iso_time(req.time)?);
            painter.note(&lines)?
        }
        Kind::Income => painter.income()?,
        Kind::Comment => painter.comment()?,
        Kind::Plain => {
            let (page, b) = painter.signature_box()?;
            painter.text_in(page, b, &painter.signed_by()?, BLACK)?
        }
    }
    painter.finish()
}

/// A box of visible page space in points: x, y of its lower left corner, width, height.
type Area = [f32; 4];

struct Painter<'a> {
    doc: &'a lopdf::Document,
    new: &'a mut lopdf::Document,
    req: &'a Request,
    font: Option<Font>,
    drawings: Vec<(Page, Area, Canvas)>,
}

impl Painter<'_> {
    fn font(&mut self) -> Result<&mut Font, crate::Error> {
        let font = match self.font.take() {
            Some(font) => font,
            None => Font::load(self.req.layout.font.as_deref())?,
        };
        Ok(self.font.insert(font))
    }

    /// Adds `canvas` at `area` of `page`, refusing a place outside the page.
    fn draw(&mut self, page: Page, area: Area, canvas: Canvas) -> Result<(), crate::Error> {
        let (w, h) = page.size();
        let [x, y, aw, ah] = area;
        let inside = x >= -0.5 && y >= -0.5 && x + aw <= w + 0.5 && y + ah <= h + 0.5;
        if !inside || area.iter().any(|v| !v.is_finite()) {
            return Err(crate::Error::Appearance(format!(
                "the box at x {:.0} mm, y {:.0} mm ({:.0} × {:.0} mm) lies outside the page ({:.0} × {:.0} mm)",
                x / PT_PER_MM,
                y / PT_PER_MM,
                aw / PT_PER_MM,
                ah / PT_PER_MM,
                w / PT_PER_MM,
                h / PT_PER_MM
            )));
        }
        self.drawings.push((page, area, canvas));
        Ok(())
    }

    /// The signature box: configured, else the default described in the module's doc.
    fn signature_box(&self) -> Result<(Page, Area), crate::Error> {
        let placed = self.req.layout.signature;
        let page = Page::find(self.doc, placed.map_or(-1, |p| p.page))?;
        let (pw, ph) = page.size();
        let area = match placed {
            Some(p) => placement_area(&p, SIGNATURE_W_MM, SIGNATURE_H_MM)?,
            None => {
                let (w, h) = (SIGNATURE_W_MM * PT_PER_MM, SIGNATURE_H_MM * PT_PER_MM);
                let text_w = pw - (MARGIN_LEFT_MM + MARGIN_RIGHT_MM) * PT_PER_MM;
                let centre = MARGIN_LEFT_MM * PT_PER_MM + text_w * 0.75;
                let x = (centre - w / 2.0).clamp(0.0, (pw - w).max(0.0));
                let y = (SIGNATURE_BOTTOM_MM * PT_PER_MM).min((ph - h).max(0.0));
                [x, y, w.min(pw), h.min(ph)]
            }
        };
        Ok((page, area))
    }

    /// Who signed, for the text appearances.
    fn signed_by(&self) -> Result<Vec<String>, crate::Error> {
        let mut lines = vec![format!("Ký bởi: {}", self.req.signer)];
        if !self.req.organisation.trim().is_empty() {
            lines.push(self.req.organisation.clone());
        }
        lines.push(format!("Thời gian: {}", iso_time(self.req.time)?));
        Ok(lines)
    }

    /// `paragraphs` in black or `color`, as large as fits in `area` (at most 10 pt).
    fn text_in(
        &mut self,
        page: Page,
        area: Area,
        paragraphs: &[String],
        color: Rgb,
    ) -> Result<(), crate::Error> {
        let [_, _, w, h] = area;
        let lines = draw::fit(self.font()?, paragraphs, w, h, NOTE_PT, PAD_PT)?;
        let mut canvas = Canvas::new(w, h);
        canvas.text(self.font()?, &lines, PAD_PT, Align::Left, color)?;
        self.draw(page, area, canvas)
    }

    fn approved(&mut self) -> Result<(), crate::Error> {
        let (page, area) = self.signature_box()?;
        let Some(png) = &self.req.signature_image else {
            return self.text_in(page, area, &self.signed_by()?, BLACK);
        };
        let picture = Picture::decode(png, "the signature image")?;
        let [_, _, w, h] = area;
        // Fitted in the box, keeping its proportions, centred.
        let scale = (w / picture.width as f32).min(h / picture.height as f32);
        let (iw, ih) = (picture.width as f32 * scale, picture.height as f32 * scale);
        let id = picture.embed(self.new)?;
        let mut canvas = Canvas::new(w, h);
        canvas.image(id, (w - iw) / 2.0, (h - ih) / 2.0, iw, ih);
        self.draw(page, area, canvas)
    }

    fn issued(&mut self) -> Result<(), crate::Error> {
        let layout = &self.req.layout;
        let diameter = layout.seal_size_mm.unwrap_or(DEFAULT_SEAL_MM);
        if !(5.0..=100.0).contains(&diameter) {
            return Err(crate::Error::Appearance(format!(
                "seal_size_mm is {diameter}: a seal is 5 to 100 mm across"
            )));
        }
        let d = diameter * PT_PER_MM;
        let picture = match &self.req.seal_image {
            Some(png) => Some(Picture::decode(png, "the seal image")?),
            None => None,
        };
        // The picture's width is the seal's diameter; its height keeps the proportions.
        let h = picture
            .as_ref()
            .map_or(d, |p| d * p.height as f32 / p.width as f32);
        let (page, x, y) = match layout.seal {
            Some(p) => (Page::find(self.doc, p.page)?, mm(p.x_mm)?, mm(p.y_mm)?),
            None => {
                let (page, [sx, sy, sw, sh]) = self.signature_box()?;
                if picture.is_some() {
                    (page, sx + sw / 3.0 - d, sy + sh / 2.0 - h / 2.0)
                } else {
                    // Written as text, the seal goes under the signature box, not over its text.
                    (page, sx, sy - h - 2.0 * PT_PER_MM)
                }
            }
        };
        // A seal pushed past the page's edge by a box near it is moved back onto the page.
        let (pw, ph) = page.size();
        let area = [
            x.clamp(0.0, (pw - d).max(0.0)),
            y.clamp(0.0, (ph - h).max(0.0)),
            d,
            h,
        ];
        match picture {
            Some(picture) => {
                let id = picture.embed(self.new)?;
                let mut canvas = Canvas::new(d, h);
                canvas.image(id, 0.0, 0.0, d, h);
                self.draw(page, area, canvas)?;
            }
            None => {
                let text = vec![
                    format!("Đóng dấu: {}", self.req.organisation),
                    format!("Văn thư: {}", self.req.signer),
                    iso_time(self.req.time)?,
                ];
                self.text_in(page, area, &text, BLACK)?;
            }
        }

        if let Some(number) = self
            .req
            .doc_number
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            let area = self.page1_area(self.req.layout.doc_number, 40.0, 47.0)?;
            self.write_at(area, number)?;
        }
        let date = match self
            .req
            .issued_date
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(given) => parse_date(given)?,
            None => self.req.time.date(),
        };
        let text = vietnamese_date(date);
        let default_x = MARGIN_LEFT_MM
            + 0.5 * (self.page1()?.size().0 / PT_PER_MM - MARGIN_LEFT_MM - MARGIN_RIGHT_MM)
            + 15.0;
        let area = self.page1_area(self.req.layout.issued_date, default_x, 47.0)?;
        self.write_at(area, &text)
    }

    fn page1(&self) -> Result<Page, crate::Error> {
        Page::find(self.doc, 1)
    }

    /// A line's place: `placed`, else on page 1 at `x_mm` from the left and `top_mm` below the
    /// top (the width is then filled in by [`Painter::write_at`]).
    fn page1_area(
        &self,
        placed: Option<Placement>,
        x_mm: f32,
        top_mm: f32,
    ) -> Result<(Page, Area), crate::Error> {
        match placed {
            Some(p) => Ok((Page::find(self.doc, p.page)?, placement_area(&p, 0.0, 0.0)?)),
            None => {
                let page = self.page1()?;
                let (_, ph) = page.size();
                Ok((page, [x_mm * PT_PER_MM, ph - top_mm * PT_PER_MM, 0.0, 0.0]))
            }
        }
    }

    /// `text` in 13 pt black with its baseline just above the lower edge of `area`, as wide as
    /// it needs (or as `area` is, shrinking the text to fit).
    fn write_at(&mut self, (page, area): (Page, Area), text: &str) -> Result<(), crate::Error> {
        let [x, y, w, _] = area;
        let font = self.font()?;
        let natural = font.width(text, BODY_PT)? + 2.0 * PAD_PT;
        let size = if w > 0.0 && natural > w {
            BODY_PT * (w - 2.0 * PAD_PT).max(1.0) / (natural - 2.0 * PAD_PT)
        } else {
            BODY_PT
        };
        let lines = [Line::new(text, size)];
        let (bw, bh) = draw::block_size(font, &lines, PAD_PT)?;
        let mut canvas = Canvas::new(bw, bh);
        canvas.text(self.font()?, &lines, PAD_PT, Align::Left, BLACK)?;
        self.draw(page, [x, y, bw, bh], canvas)
    }

    /// The note of copies and attachments: right-aligned 10 pt lines, top right of page 1.
    fn note(&mut self, texts: &[String]) -> Result<(), crate::Error> {
        let lines: Vec<Line> = texts
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Line::new(t.clone(), NOTE_PT))
            .collect();
        let (w, h) = draw::block_size(self.font()?, &lines, PAD_PT)?;
        let (page, x, y) = match self.req.layout.stamp {
            Some(p) => (Page::find(self.doc, p.page)?, mm(p.x_mm)?, mm(p.y_mm)?),
            None => {
                let page = self.page1()?;
                let (pw, ph) = page.size();
                (page, pw - 10.0 * PT_PER_MM - w, ph - 5.0 * PT_PER_MM - h)
            }
        };
        let mut canvas = Canvas::new(w, h);
        canvas.text(self.font()?, &lines, PAD_PT, Align::Right, BLACK)?;
        self.draw(page, [x, y, w, h], canvas)
    }

    /// The received-document stamp: a red frame around the organisation, "ĐẾN", the number,
    /// the date and time and the clerk.
    fn income(&mut self) -> Result<(), crate::Error> {
        let req = self.req;
        let mut lines = Vec::new();
        if !req.organisation.trim().is_empty() {
            lines.push(Line::new(req.organisation.to_uppercase(), NOTE_PT));
        }
        lines.push(Line::new("ĐẾN", 16.0));
        let number = req
            .doc_number
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("……");
        lines.push(Line::new(format!("Số: {number}"), NOTE_PT));
        let when = req
            .time
            .format(time::macros::format_description!(
                "[day]/[month]/[year] [hour]:[minute]"
            ))
            .map_err(|e| crate::Error::Appearance(format!("the signing time: {e}")))?;
        lines.push(Line::new(format!("Ngày: {when}"), NOTE_PT));
        lines.push(Line::new(format!("Văn thư: {}", req.signer), NOTE_PT));
        let pad = 3.0 * PAD_PT;
        let (w, h) = draw::block_size(self.font()?, &lines, pad)?;
        let w = w.max(45.0 * PT_PER_MM);
        let (page, x, y) = match req.layout.stamp {
            Some(p) => (Page::find(self.doc, p.page)?, mm(p.x_mm)?, mm(p.y_mm)?),
            None => {
                let page = self.page1()?;
                let (_, ph) = page.size();
                (page, MARGIN_LEFT_MM * PT_PER_MM, ph - 60.0 * PT_PER_MM - h)
            }
        };
        let mut canvas = Canvas::new(w, h);
        canvas.frame(0.0, 0.0, w, h, 1.5, STAMP_RED);
        canvas.text(self.font()?, &lines, pad, Align::Center, STAMP_RED)?;
        self.draw(page, [x, y, w, h], canvas)
    }

    /// The comment, then who and when, in the signature box's width; the box grows upwards
    /// to the top margin when the comment is long, and the text shrinks past that.
    fn comment(&mut self) -> Result<(), crate::Error> {
        let (page, [x, y, w, h]) = self.signature_box()?;
        let req = self.req;
        let mut paragraphs = Vec::new();
        if let Some(c) = req.comment.as_deref().filter(|c| !c.trim().is_empty()) {
            paragraphs.push(format!("Ý kiến: {}", c.trim()));
        }
        paragraphs.push(req.signer.clone());
        paragraphs.push(iso_time(req.time)?);
        let font = self.font()?;
        let mut needed = 0f32;
        for p in &paragraphs {
            let lines: Vec<Line> = draw::wrap(font, p, NOTE_PT, w - 2.0 * PAD_PT)?
                .into_iter()
                .map(|l| Line::new(l, NOTE_PT))
                .collect();
            needed += draw::block_size(font, &lines, 0.0)?.1;
        }
        let (_, ph) = page.size();
        let room = (ph - 20.0 * PT_PER_MM - y).max(h);
        let h = (needed + 2.0 * PAD_PT).clamp(h, room);
        self.text_in(page, [x, y, w, h], &paragraphs, BLACK)
    }

    /// Embeds the font once, then every canvas as the form of its widget.
    fn finish(self) -> Result<Vec<Widget>, crate::Error> {
        let Painter {
            new,
            font,
            drawings,
            ..
        } = self;
        let font_id = match &font {
            Some(font) if drawings.iter().any(|(_, _, c)| c.has_text()) => {
                let id = new
                    .try_new_object_id()
                    .map_err(|e| crate::Error::Appearance(format!("adding an object: {e}")))?;
                font.embed(new, id)?;
                Some(id)
            }
            _ => None,
        };
        let mut widgets = Vec::new();
        for (page, [x, y, w, h], canvas) in drawings {
            let (rect, matrix) = page.place(x, y, w, h);
            let normal = canvas.into_form(new, font_id, matrix)?;
            widgets.push(Widget {
                page: page.id,
                rect,
                normal,
            });
        }
        Ok(widgets)
    }
}

/// Millimetres to points, refusing what is not a number.
fn mm(v: f32) -> Result<f32, crate::Error> {
    if v.is_finite() {
        Ok(v * PT_PER_MM)
    } else {
        Err(crate::Error::Appearance(format!(
            "{v} is not a length in millimetres"
        )))
    }
}

/// A configured box in points; a zero size takes `default_w_mm × default_h_mm`.
fn placement_area(
    p: &Placement,
    default_w_mm: f32,
    default_h_mm: f32,
) -> Result<Area, crate::Error> {
    let w = if p.width_mm > 0.0 {
        p.width_mm
    } else {
        default_w_mm
    };
    let h = if p.height_mm > 0.0 {
        p.height_mm
    } else {
        default_h_mm
    };
    Ok([mm(p.x_mm)?, mm(p.y_mm)?, mm(w)?, mm(h)?])
}

/// The signing time as ISO 8601 in the signer's offset: `2019-03-12T10:05:00+07:00`.
fn iso_time(t: OffsetDateTime) -> Result<String, crate::Error> {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    ))
    .map_err(|e| crate::Error::Appearance(format!("the signing time: {e}")))
}

/// The issue date as the web application sends it: ISO 8601 (`2019-03-12`, or a date and
/// time, whose date is taken as written) or `12/03/2019`.
fn parse_date(s: &str) -> Result<Date, crate::Error> {
    let s = s.trim();
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let vn = time::macros::format_description!("[day padding:none]/[month padding:none]/[year]");
    s.get(..10)
        .and_then(|head| Date::parse(head, iso).ok())
        .or_else(|| Date::parse(s, vn).ok())
        .ok_or_else(|| {
            crate::Error::Appearance(format!(
                "IssuedDate {s:?} is not a date (2019-03-12 or 12/03/2019)"
            ))
        })
}

/// A date the way Vietnamese documents write it: "ngày 12 tháng 3 năm 2019". Decree 30 puts
/// a 0 before days under 10 and months 1 and 2 ("ngày 05 tháng 02 năm 2019").
fn vietnamese_date(d: Date) -> String {
    let month = u8::from(d.month());
    let month = if month <= 2 {
        format!("{month:02}")
    } else {
        month.to_string()
    };
    format!("ngày {:02} tháng {month} năm {}", d.day(), d.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn dates_the_vietnamese_way() {
        assert_eq!(
            vietnamese_date(date!(2019 - 03 - 12)),
            "ngày 12 tháng 3 năm 2019"
        );
        assert_eq!(
            vietnamese_date(date!(2019 - 02 - 05)),
            "ngày 05 tháng 02 năm 2019"
        );
        assert_eq!(
            vietnamese_date(date!(2020 - 12 - 31)),
            "ngày 31 tháng 12 năm 2020"
        );
        assert_eq!(
            parse_date("2019-03-12T12:00:00+07:00").unwrap(),
            date!(2019 - 03 - 12)
        );
        assert_eq!(parse_date("2019-03-12").unwrap(), date!(2019 - 03 - 12));
        assert_eq!(parse_date(" 5/2/2019 ").unwrap(), date!(2019 - 02 - 05));
        assert!(parse_date("March 12")
            .unwrap_err()
            .to_string()
            .contains("not a date"));
        assert!(parse_date("2019-13-12").is_err());
    }

    #[test]
    fn iso_time_keeps_the_offset_and_drops_fractions() {
        let t = datetime!(2019-03-12 10:05:00.25 +07:00);
        assert_eq!(iso_time(t).unwrap(), "2019-03-12T10:05:00+07:00");
    }
}
