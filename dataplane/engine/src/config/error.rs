//! Config errors that name the file, the field path, what was expected, and
//! the line and column.
//!
//! Validation works on the parsed types and records a [`FieldPath`] such as
//! `virtualService[reviews].http[1].route[0].weight`. To give line:column,
//! the same source is parsed a second time into toml's spanned document and
//! the path is walked there ([`locate`]); serde errors come with a byte span,
//! which is turned back into a path the same way ([`path_at`]).

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a path into the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array element; `label` (an object's `name`) is shown instead of the
    /// index when known, as in `virtualService[reviews]`.
    Index {
        /// Position in the array.
        index: usize,
        /// The element's name, when it has one.
        label: Option<String>,
    },
}

/// A path to a field, e.g. `destinationRule[reviews].trafficPolicy.outlierDetection.interval`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The root of the document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Segment::Key(key.to_owned()));
        Self(segs)
    }

    /// This path extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Segment::Index { index, label: None });
        Self(segs)
    }

    /// This path extended by an array index shown as the element's name.
    #[must_use]
    pub fn named(&self, index: usize, label: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Segment::Index {
            index,
            label: Some(label.to_owned()),
        });
        Self(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Index { index, label } => match label {
                    Some(l) => write!(f, "[{l}]")?,
                    None => write!(f, "[{index}]")?,
                },
            }
            first = false;
        }
        Ok(())
    }
}

/// A line and column, both counted from 1 (columns in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for LineCol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a config file (an error or, in [`crate::config::Warning`], a warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<String>,
    /// The field at fault (empty for a syntax error outside any field).
    pub path: FieldPath,
    /// The analyzer code (Istio's `IST…` where one exists, ours `MSH…`).
    pub code: Option<&'static str>,
    /// What was expected and what to do.
    pub message: String,
    /// Where in the file, when known.
    pub location: Option<LineCol>,
}

impl ConfigError {
    pub(crate) fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            file: None,
            path,
            code: None,
            message: message.into(),
            location: None,
        }
    }

    /// This problem with an analyzer code.
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(loc) = self.location {
                write!(f, ":{loc}")?;
            }
            f.write_str(": ")?;
        } else if let Some(loc) = self.location {
            write!(f, "{loc}: ")?;
        }
        if !self.path.0.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found in one config (validation does not stop at the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Sets the file name and the line:column of every problem from `source`.
    pub fn locate_in(mut self, file: Option<&str>, source: &str) -> Self {
        locate_all(&mut self.0, file, source);
        self
    }
}

/// Sets file and location on each problem, from the spanned parse of `source`.
pub(crate) fn locate_all(problems: &mut [ConfigError], file: Option<&str>, source: &str) {
    let doc = DeTable::parse(source).ok();
    for p in problems {
        p.file = file.map(str::to_owned);
        if p.location.is_none()
            && let Some(doc) = &doc
            && let Some(span) = locate(doc.get_ref(), &p.path)
        {
            p.location = Some(line_col(source, span.start));
        }
    }
}

/// The byte span of the deepest existing value along `path`.
pub(crate) fn locate(doc: &DeTable<'_>, path: &FieldPath) -> Option<Range<usize>> {
    let mut span: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc);
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for seg in &path.0 {
        let next = match seg {
            Segment::Key(k) => table.and_then(|t| {
                t.iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    .map(|(key, v)| (key.span(), v))
            }),
            Segment::Index { index, .. } => {
                array.and_then(|a| a.get(*index)).map(|v| (v.span(), v))
            }
        };
        let Some((key_span, value)) = next else {
            break;
        };
        // Point at the key for scalars (where the user typed the field) and
        // at the value's start for tables (the `[[...]]` header).
        span = Some(match value.get_ref() {
            DeValue::Table(_) | DeValue::Array(_) => value.span(),
            _ => key_span,
        });
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    span
}

/// The path of the deepest key or value whose span contains `offset`.
///
/// Every node is visited: the span of an array of tables does not cover its
/// sub-tables written as separate `[a.b]` headers, so a parent's span cannot
/// be used to prune.
pub(crate) fn path_at(doc: &DeTable<'_>, offset: usize) -> FieldPath {
    fn within(r: Range<usize>, offset: usize) -> bool {
        r.start <= offset && offset < r.end.max(r.start + 1)
    }
    fn walk(v: &DeValue<'_>, offset: usize, path: &mut FieldPath, best: &mut FieldPath) {
        match v {
            DeValue::Table(t) => {
                for (k, child) in t.iter() {
                    path.0.push(Segment::Key(k.get_ref().to_string()));
                    if (within(k.span(), offset) || within(child.span(), offset))
                        && path.0.len() > best.0.len()
                    {
                        *best = path.clone();
                    }
                    walk(child.get_ref(), offset, path, best);
                    path.0.pop();
                }
            }
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    path.0.push(Segment::Index {
                        index: i,
                        label: label_of(item.get_ref()),
                    });
                    if within(item.span(), offset) && path.0.len() > best.0.len() {
                        *best = path.clone();
                    }
                    walk(item.get_ref(), offset, path, best);
                    path.0.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = FieldPath::root();
    let mut path = FieldPath::root();
    for (k, child) in doc.iter() {
        path.0.push(Segment::Key(k.get_ref().to_string()));
        if within(k.span(), offset) || within(child.span(), offset) {
            best = path.clone();
        }
        walk(child.get_ref(), offset, &mut path, &mut best);
        path.0.pop();
    }
    best
}

fn label_of(v: &DeValue<'_>) -> Option<String> {
    let DeValue::Table(t) = v else { return None };
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == "name")
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    LineCol {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_names_instead_of_indices_when_known() {
        let p = FieldPath::root()
            .key("virtualService")
            .named(0, "reviews")
            .key("http")
            .index(1)
            .key("route")
            .index(0)
            .key("weight");
        assert_eq!(
            p.to_string(),
            "virtualService[reviews].http[1].route[0].weight"
        );
    }

    #[test]
    fn locates_a_nested_field_by_path() {
        let src = "[[virtualService]]\nname = \"r\"\nhosts = [\"r\"]\n\n[[virtualService.http]]\ntimeout = \"x\"\n";
        let doc = DeTable::parse(src).unwrap();
        let p = FieldPath::root()
            .key("virtualService")
            .index(0)
            .key("http")
            .index(0)
            .key("timeout");
        let span = locate(doc.get_ref(), &p).unwrap();
        assert_eq!(line_col(src, span.start), LineCol { line: 6, column: 1 });
    }

    #[test]
    fn finds_the_path_of_an_offset() {
        let src = "[[destinationRule]]\nname = \"reviews\"\nhost = \"reviews\"\n[destinationRule.trafficPolicy.outlierDetection]\ninterval = \"1x\"\n";
        let doc = DeTable::parse(src).unwrap();
        let offset = src.find("\"1x\"").unwrap();
        let p = path_at(doc.get_ref(), offset);
        assert_eq!(
            p.to_string(),
            "destinationRule[reviews].trafficPolicy.outlierDetection.interval"
        );
    }
}
