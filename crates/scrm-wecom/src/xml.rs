//! A small, hostile-input-safe XML tree reader for WeCom callback bodies.
//!
//! WeCom callbacks are flat documents (`<xml>` with leaf children, plus `MemChangeList/Item`),
//! so a tiny tree is simpler and more tolerant of element order than serde mapping.
//! What it refuses, and why: `<!DOCTYPE …>` (the door to entity-expansion and external-entity
//! attacks), entity references other than the five predefined ones and character references,
//! nesting deeper than [`MAX_DEPTH`] and more than [`MAX_ELEMENTS`] elements (bounded memory for
//! an unauthenticated caller).

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// Deepest nesting accepted; WeCom callbacks need 3 (`xml/MemChangeList/Item`).
pub(crate) const MAX_DEPTH: usize = 16;
/// Most elements accepted in one document.
pub(crate) const MAX_ELEMENTS: usize = 20_000;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The document declares a DTD; refused to rule out entity tricks.
    #[error("XML with a DOCTYPE is refused")]
    DocType,
    /// An entity reference other than `&lt; &gt; &amp; &apos; &quot;` or `&#…;`.
    #[error("XML entity reference `&{0};` is refused")]
    Entity(String),
    /// Nesting or element count over the limits.
    #[error("XML document too large or too deep")]
    TooLarge,
    /// Not well-formed, or no root element.
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// One element: its name, its text (CDATA and text joined) and its child elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
    /// True when any CDATA section contributed to `text` (whitespace around it is layout).
    has_cdata: bool,
}

impl Element {
    /// The first direct child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Text of the first direct child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Parses `xml` into its root element.
pub(crate) fn parse(xml: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError::Malformed("content after the root element".into()));
            }
            Event::Start(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                stack.push(Element {
                    name: name_of(start.name().as_ref())?,
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                let element = Element {
                    name: name_of(start.name().as_ref())?,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let mut element = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                finish_text(&mut element);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    let s = text
                        .decode()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    // Whitespace next to a CDATA section is layout; the CDATA is the value.
                    if !(top.has_cdata && s.trim().is_empty()) {
                        top.text.push_str(&s);
                    }
                } else if !text.iter().all(u8::is_ascii_whitespace) {
                    return Err(XmlError::Malformed("text outside the root element".into()));
                }
            }
            Event::CData(data) => {
                let top = stack
                    .last_mut()
                    .ok_or_else(|| XmlError::Malformed("CDATA outside the root element".into()))?;
                let s = data
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                if !top.has_cdata {
                    // Whitespace before the first CDATA section is pretty-printing, not content.
                    if top.text.trim().is_empty() {
                        top.text.clear();
                    }
                    top.has_cdata = true;
                }
                top.text.push_str(&s);
            }
            Event::GeneralRef(reference) => {
                let top = stack.last_mut().ok_or_else(|| {
                    XmlError::Malformed("reference outside the root element".into())
                })?;
                let raw = reference
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                if reference.is_char_ref() {
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) => top.text.push(c),
                        _ => return Err(XmlError::Entity(raw.into_owned())),
                    }
                } else if let Some(s) = resolve_predefined_entity(&raw) {
                    top.text.push_str(s);
                } else {
                    return Err(XmlError::Entity(raw.into_owned()));
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

fn name_of(raw: &[u8]) -> Result<String, XmlError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|e| XmlError::Malformed(e.to_string()))
}

/// Drops layout whitespace in elements that have children (their text is never a value).
fn finish_text(element: &mut Element) {
    if !element.children.is_empty() {
        let trimmed = element.text.trim();
        if trimmed.len() != element.text.len() {
            element.text = trimmed.to_owned();
        }
    }
}

/// Writes `<name><![CDATA[value]]></name>`, splitting `]]>` so any value round-trips.
pub(crate) fn write_cdata(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("><![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]></");
    out.push_str(name);
    out.push('>');
}

/// Writes `<name>value</name>` for numbers and other values that need no quoting.
pub(crate) fn write_plain(out: &mut String, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(out, "<{name}>{value}</{name}>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cdata_text_and_children_in_any_layout() {
        let doc = "<xml>\n\t<A><![CDATA[ a ]]></A>\n\t<B>12</B><L>\n<Item>x</Item><Item><![CDATA[y]]></Item></L><E/></xml>";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "xml");
        assert_eq!(root.child_text("A"), Some(" a "));
        assert_eq!(root.child_text("B"), Some("12"));
        let items: Vec<_> = root
            .child("L")
            .unwrap()
            .children
            .iter()
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(items, ["x", "y"]);
        assert_eq!(root.child_text("E"), Some(""));
    }

    #[test]
    fn predefined_and_char_references_resolve() {
        let root = parse("<xml><A>a&amp;b&#x4e2d;&lt;</A></xml>").unwrap();
        assert_eq!(root.child_text("A"), Some("a&b中<"));
    }

    #[test]
    fn doctype_and_custom_entities_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><xml><A>&lol2;</A></xml>"#;
        assert_eq!(parse(bomb), Err(XmlError::DocType));
        assert_eq!(
            parse("<xml><A>&xxe;</A></xml>"),
            Err(XmlError::Entity("xxe".into()))
        );
    }

    #[test]
    fn malformed_and_deep_documents_are_refused() {
        assert!(matches!(
            parse("<xml><A></B></xml>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(parse("<xml><A>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse(""), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<a/><b/>"), Err(XmlError::Malformed(_))));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(parse(&deep), Err(XmlError::TooLarge));
    }

    #[test]
    fn cdata_writer_survives_the_terminator() {
        let mut out = String::from("<xml>");
        write_cdata(&mut out, "A", "x]]>y");
        out.push_str("</xml>");
        assert_eq!(parse(&out).unwrap().child_text("A"), Some("x]]>y"));
    }
}
