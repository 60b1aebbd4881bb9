//! Exclusive XML Canonicalization 1.0 without comments (`xml-exc-c14n#`) of a whole document,
//! as XML-DSig's `Reference URI=""` with the enveloped-signature transform digests it.
//! No InclusiveNamespaces prefix list; the parser (roxmltree) has already normalised line
//! ends and attribute values and merged CDATA into text, as the XPath data model requires.

use std::collections::BTreeMap;

use roxmltree::{Document, Node, NodeType};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The qualified name's prefix of the element or attribute written at `range` in `source`.
fn prefix_at(source: &str, start: usize) -> Option<&str> {
    let rest = source.get(start..)?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>' || c == '=')
        .unwrap_or(rest.len());
    rest[..end].split_once(':').map(|(p, _)| p)
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// The canonical form of the whole document.
pub fn canonicalize(doc: &Document<'_>) -> String {
    let source = doc.input_text();
    let mut out = String::with_capacity(source.len());
    let root = doc.root_element();
    let mut after_root = false;
    for child in doc.root().children() {
        match child.node_type() {
            NodeType::Element => {
                element(source, child, &BTreeMap::new(), &mut out);
                after_root = true;
            }
            NodeType::PI => {
                if after_root {
                    out.push('\n');
                }
                pi(child, &mut out);
                if !after_root {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let _ = root;
    out
}

fn pi(node: Node<'_, '_>, out: &mut String) {
    if let Some(p) = node.pi() {
        out.push_str("<?");
        out.push_str(p.target);
        if let Some(v) = p.value {
            out.push(' ');
            out.push_str(v);
        }
        out.push_str("?>");
    }
}

/// Writes `node` and its content; `rendered` maps each prefix ("" for the default) to the
/// namespace an output ancestor declared for it.
fn element(
    source: &str,
    node: Node<'_, '_>,
    rendered: &BTreeMap<String, String>,
    out: &mut String,
) {
    let start = node.range().start + 1;
    let prefix = prefix_at(source, start).unwrap_or("");
    let local = node.tag_name().name();
    let qname = if prefix.is_empty() {
        local.to_string()
    } else {
        format!("{prefix}:{local}")
    };
    // Prefixes visibly used here, with their namespaces.
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    used.insert(
        prefix.to_string(),
        node.tag_name().namespace().unwrap_or("").to_string(),
    );
    let mut attrs: Vec<(String, String, String, String)> = Vec::new();
    for a in node.attributes() {
        let ap = prefix_at(source, a.range_qname().start).unwrap_or("");
        let uri = a.namespace().unwrap_or("");
        if !ap.is_empty() && uri != XML_NS {
            used.insert(ap.to_string(), uri.to_string());
        }
        let aq = if ap.is_empty() {
            a.name().to_string()
        } else {
            format!("{ap}:{}", a.name())
        };
        attrs.push((
            uri.to_string(),
            a.name().to_string(),
            aq,
            a.value().to_string(),
        ));
    }
    attrs.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let mut now = rendered.clone();
    let mut decls: Vec<(String, String)> = Vec::new();
    for (p, uri) in used {
        if p == "xml" {
            continue;
        }
        let before = rendered.get(&p).map(String::as_str);
        let needed = if p.is_empty() {
            // xmlns="" only to undo a default an ancestor rendered.
            before.unwrap_or("") != uri
        } else {
            before != Some(uri.as_str())
        };
        if needed {
            now.insert(p.clone(), uri.clone());
            decls.push((p, uri));
        }
    }
    out.push('<');
    out.push_str(&qname);
    for (p, uri) in &decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(uri, out);
        out.push('"');
    }
    for (_, _, aq, value) in &attrs {
        out.push(' ');
        out.push_str(aq);
        out.push_str("=\"");
        escape_attr(value, out);
        out.push('"');
    }
    out.push('>');
    for child in node.children() {
        match child.node_type() {
            NodeType::Element => element(source, child, &now, out),
            NodeType::Text => escape_text(child.text().unwrap_or(""), out),
            NodeType::PI => pi(child, out),
            _ => {}
        }
    }
    out.push_str("</");
    out.push_str(&qname);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = Document::parse(xml).unwrap();
        canonicalize(&doc)
    }

    /// Examples in the manner of the C14N recommendations' (§3), for the exclusive form.
    #[test]
    fn the_recommendations_examples() {
        assert_eq!(
            c14n("<?xml version=\"1.0\"?>\n<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<!-- c -->\n<doc>Hello, world!<!-- Comment 1 --></doc>\n<?pi-without-data     ?>\n"),
            "<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<doc>Hello, world!</doc>\n<?pi-without-data?>"
        );
        assert_eq!(
            c14n("<doc>\r\n<e1   />\n<e2   ></e2>\n<e3   name = \"elem3\"   id=\"elem3\"   />\n<e5 a:attr=\"out\" b:attr=\"sorted\" attr2=\"all\" attr=\"I'm\" xmlns:b=\"http://www.ietf.org\" xmlns:a=\"http://www.w3.org\" xmlns=\"http://example.org\"/>\n</doc>"),
            "<doc>\n<e1></e1>\n<e2></e2>\n<e3 id=\"elem3\" name=\"elem3\"></e3>\n<e5 xmlns=\"http://example.org\" xmlns:a=\"http://www.w3.org\" xmlns:b=\"http://www.ietf.org\" attr=\"I'm\" attr2=\"all\" b:attr=\"sorted\" a:attr=\"out\"></e5>\n</doc>"
        );
        assert_eq!(
            c14n("<doc><text>First line&#x0d;&#10;Second line</text><value>&#x32;</value><compute><![CDATA[value>\"0\" && value<\"10\" ?\"valid\":\"error\"]]></compute><norm attr=' &apos;   &#x20;&#13;&#xa;&#9;   &apos; '/></doc>"),
            "<doc><text>First line&#xD;\nSecond line</text><value>2</value><compute>value&gt;\"0\" &amp;&amp; value&lt;\"10\" ?\"valid\":\"error\"</compute><norm attr=\" '    &#xD;&#xA;&#x9;   ' \"></norm></doc>"
        );
    }

    #[test]
    fn exclusive_namespaces_are_declared_where_used() {
        assert_eq!(
            c14n("<a:root xmlns:a=\"urn:a\" xmlns:unused=\"urn:u\" xmlns=\"urn:d\"><b>x</b><a:c xmlns=\"\"><d/></a:c><e xmlns:a=\"urn:a\" a:k=\"1\"/></a:root>"),
            "<a:root xmlns:a=\"urn:a\"><b xmlns=\"urn:d\">x</b><a:c><d></d></a:c><e xmlns=\"urn:d\" a:k=\"1\"></e></a:root>"
        );
        assert_eq!(
            c14n("<r xml:lang=\"vi\">Công văn số 12/UBND</r>"),
            "<r xml:lang=\"vi\">Công văn số 12/UBND</r>"
        );
    }
}
