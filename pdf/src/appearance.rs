//! The look of a signature on the page, as Decree 30/2020 prescribes it.

use time::OffsetDateTime;

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
    /// The seal's real diameter.
    pub seal_size_mm: Option<f32>,
    /// Where the document number is written (`issued`).
    pub doc_number: Option<Placement>,
    /// Where the issue date is written (`issued`).
    pub issued_date: Option<Placement>,
}

/// A box on a page.
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
#[derive(Debug, Clone)]
pub struct Widget {
    pub page: lopdf::ObjectId,
    /// `[x1 y1 x2 y2]` in the page's default user space.
    pub rect: [f32; 4],
    /// The normal appearance, a form XObject added to the document.
    pub normal: lopdf::ObjectId,
}

/// Draws `req` into new objects of `new` (reading pages from `doc`), and returns the widgets
/// of the signature field. `Kind::None` gives none.
pub fn build(
    doc: &lopdf::Document,
    new: &mut lopdf::Document,
    req: &Request,
) -> Result<Vec<Widget>, crate::Error> {
    let _ = (doc, new);
    match req.kind {
        Kind::None => Ok(Vec::new()),
        _ => Err(crate::Error::Appearance("not drawn yet".into())),
    }
}
