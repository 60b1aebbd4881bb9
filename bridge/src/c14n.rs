//! XML Canonicalization 1.0, inclusive (`xml-c14n`) and exclusive (`xml-exc-c14n#`, with an
//! InclusiveNamespaces prefix list), with or without comments, of a whole document or of an
//! element's subtree, leaving out one element (the enveloped-signature transform). The parser
//! (roxmltree) has already normalised line ends and attribute values and merged CDATA into
//! text, as the XPath data model requires.

use std::collections::{BTreeMap, BTreeSet};

use roxmltree::{Document, Node, NodeId, NodeType};

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

/// Which canonicalization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Method {
    /// Exclusive c14n; else inclusive.
    pub exclusive: bool,
    pub comments: bool,
    /// Exclusive c14n's InclusiveNamespaces PrefixList (`#default` is the default namespace,
    /// kept as "").
    pub inclusive_prefixes: BTreeSet<String>,
}

impl Method {
    pub const EXCLUSIVE: &'static str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    pub const EXCLUSIVE_COMMENTS: &'static str =
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
    pub const INCLUSIVE: &'static str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
    pub const INCLUSIVE_COMMENTS: &'static str =
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";

    /// The method an XML-DSig algorithm URI names, if it is one of the four above.
    pub fn from_uri(uri: &str) -> Option<Method> {
        let (exclusive, comments) = match uri {
            Self::EXCLUSIVE => (true, false),
            Self::EXCLUSIVE_COMMENTS => (true, true),
            Self::INCLUSIVE => (false, false),
            Self::INCLUSIVE_COMMENTS => (false, true),
            _ => return None,
        };
        Some(Method {
            exclusive,
            comments,
            inclusive_prefixes: BTreeSet::new(),
        })
    }
}

/// The canonical form of the whole document (exclusive, without comments).
pub fn canonicalize(doc: &Document<'_>) -> String {
    canonicalize_subset(
        doc,
        doc.root(),
        None,
        &Method {
            exclusive: true,
            ..Method::default()
        },
    )
}

struct Walk<'m> {
    source: &'m str,
    method: &'m Method,
    omit: Option<NodeId>,
}

/// The canonical form of `apex` (the document's root node, or an element) and what it holds,
/// without the element `omit` and its content.
pub fn canonicalize_subset(
    doc: &Document<'_>,
    apex: Node<'_, '_>,
    omit: Option<NodeId>,
    method: &Method,
) -> String {
    let walk = Walk {
        source: doc.input_text(),
        method,
        omit,
    };
    let mut out = String::with_capacity(walk.source.len());
    if apex.is_element() {
        // Inclusive c14n of a subtree carries the xml:* attributes its ancestors set.
        let mut inherited: Vec<(String, String)> = Vec::new();
        if !method.exclusive {
            for a in apex.ancestors().skip(1).filter(|n| n.is_element()) {
                for attr in a.attributes() {
                    if attr.namespace() == Some(XML_NS)
                        && apex.attribute((XML_NS, attr.name())).is_none()
                        && !inherited.iter().any(|(n, _)| n == attr.name())
                    {
                        inherited.push((attr.name().to_string(), attr.value().to_string()));
                    }
                }
            }
        }
        walk.element(apex, &BTreeMap::new(), &inherited, &mut out);
        return out;
    }
    let mut after_root = false;
    for child in apex.children() {
        match child.node_type() {
            NodeType::Element => {
                if Some(child.id()) != omit {
                    walk.element(child, &BTreeMap::new(), &[], &mut out);
                }
                after_root = true;
            }
            NodeType::PI | NodeType::Comment
                if child.node_type() == NodeType::PI || method.comments =>
            {
                if after_root {
                    out.push('\n');
                }
                other(child, &mut out);
                if !after_root {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    out
}

/// A processing instruction or a comment.
fn other(node: Node<'_, '_>, out: &mut String) {
    if let Some(p) = node.pi() {
        out.push_str("<?");
        out.push_str(p.target);
        if let Some(v) = p.value {
            out.push(' ');
            out.push_str(v);
        }
        out.push_str("?>");
    } else if node.is_comment() {
        out.push_str("<!--");
        out.push_str(node.text().unwrap_or(""));
        out.push_str("-->");
    }
}

impl Walk<'_> {
    /// Writes `node` and its content; `rendered` maps each prefix ("" for the default) to the
    /// namespace an output ancestor declared for it. `inherited`: xml:* attributes to add.
    fn element(
        &self,
        node: Node<'_, '_>,
        rendered: &BTreeMap<String, String>,
        inherited: &[(String, String)],
        out: &mut String,
    ) {
        let source = self.source;
        let start = node.range().start + 1;
        let prefix = prefix_at(source, start).unwrap_or("");
        let local = node.tag_name().name();
        let qname = if prefix.is_empty() {
            local.to_string()
        } else {
            format!("{prefix}:{local}")
        };
        // The namespaces to consider rendering: exclusive c14n's visibly used ones (and the
        // listed prefixes in scope), inclusive c14n's whole scope.
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        let in_scope = || {
            node.namespaces()
                .map(|ns| (ns.name().unwrap_or("").to_string(), ns.uri().to_string()))
        };
        if self.method.exclusive {
            used.insert(
                prefix.to_string(),
                node.tag_name().namespace().unwrap_or("").to_string(),
            );
            for (p, uri) in in_scope() {
                if self.method.inclusive_prefixes.contains(&p) {
                    used.insert(p, uri);
                }
            }
        } else {
            used.insert(String::new(), String::new());
            used.extend(in_scope());
        }
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
        for (name, value) in inherited {
            attrs.push((
                XML_NS.to_string(),
                name.clone(),
                format!("xml:{name}"),
                value.clone(),
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
                NodeType::Element if Some(child.id()) != self.omit => {
                    self.element(child, &now, &[], out)
                }
                NodeType::Text => escape_text(child.text().unwrap_or(""), out),
                NodeType::PI => other(child, out),
                NodeType::Comment if self.method.comments => other(child, out),
                _ => {}
            }
        }
        out.push_str("</");
        out.push_str(&qname);
        out.push('>');
    }
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
