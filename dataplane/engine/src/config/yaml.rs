//! Istio manifests as Kubernetes YAML: the second syntax of the one config
//! model.
//!
//! ```text
//! YAML text ──saphyr-parser events──▶ Node tree (line:column on every node)
//!   ──per document: apiVersion/kind──▶ mesh-shaped TOML tables
//!     (metadata.name/namespace beside the spec's fields, as a mesh file writes them)
//! ```
//!
//! The tables are exactly what a TOML mesh file holds, so everything after
//! this point (`--set`, sweeps, validation) is shared by both syntaxes. Each
//! object keeps the line:column of every field it came from ([`Spans`]), so an
//! error found later names the YAML file, line and column.
//!
//! What Kubernetes users keep in their repos is accepted as it is: several
//! documents per file (`---`), `kind: List` (as `kubectl get -o yaml` writes
//! it), `networking.istio.io/v1`, `v1beta1` and `v1alpha3`. Objects of other
//! kinds are skipped with one note each; an Istio field the engine does not
//! model is a warning naming its path (never a silent drop); anything else
//! unknown is an error, as the Kubernetes API server's schema would make it.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use toml::{Table, Value as Toml};

use super::error::{ConfigError, FieldPath, LineCol};

/// Where each field of one object was written: index-form paths relative to
/// the object (`http[0].route[1].weight`; `name` and `namespace` are the
/// metadata's) → line:column. The empty path is the object itself.
pub type Spans = BTreeMap<String, LineCol>;

/// The Istio kinds the engine models, with the mesh file's array for each.
pub const KINDS: [(&str, &str); 4] = [
    ("VirtualService", "virtualService"),
    ("DestinationRule", "destinationRule"),
    ("Gateway", "gateway"),
    ("ServiceEntry", "serviceEntry"),
];

/// The Istio API versions accepted for those kinds.
pub const API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// Aliases may expand to at most this many nodes in one file (a "billion
/// laughs" document is an error, not an out-of-memory).
const ALIAS_BUDGET: usize = 1_000_000;
/// Deepest nesting accepted (no Istio object comes close).
const MAX_DEPTH: usize = 128;

/// A YAML node with the line:column where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub at: LineCol,
}

/// A YAML value, plain scalars resolved as `kubectl` resolves them (see
/// [`resolve_plain`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (any quoted or block scalar, or a plain one that is no other type).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in written order, keys unique.
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key (scalars only).
    pub key: String,
    /// Where the key is written.
    pub key_at: LineCol,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn at(span: &Span) -> LineCol {
    LineCol {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

fn problem(file: &str, location: LineCol, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: Some(file.to_owned()),
        path: FieldPath::root(),
        code: None,
        message: message.into(),
        location: Some(location),
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        at: LineCol,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// The key waiting for its value; `None` as text for the merge key.
        key: Option<(Option<String>, LineCol)>,
        /// Values of merge keys (`<<`), applied when the mapping ends.
        merges: Vec<Node>,
        at: LineCol,
        anchor: usize,
    },
}

/// Parses every document of a YAML stream (an empty document is `Null`).
///
/// Errors (syntax, tabs used as indentation, duplicate keys, non-scalar keys,
/// alias bombs, nesting too deep) name the file and line:column.
pub fn parse(source: &str, file: &str) -> Result<Vec<Node>, ConfigError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut anchors: BTreeMap<usize, (Node, usize)> = BTreeMap::new();
    let mut expanded = 0usize;
    // Whether the last scalar was a plain `<<` (the merge key, if a key).
    let mut merge_key = false;
    let mut parser = Parser::new_from_str(source);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let m = e.marker();
            problem(
                file,
                LineCol {
                    line: m.line(),
                    column: m.col() + 1,
                },
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let here = at(&span);
        let complete = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                root = None;
                None
            }
            Event::DocumentEnd => {
                docs.push(root.take().unwrap_or(Node {
                    value: Value::Null,
                    at: here,
                }));
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, ScalarStyle::Plain)
                    && !tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                merge_key = plain && text == "<<";
                let value = if plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                Some((Node { value, at: here }, anchor))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(problem(
                        file,
                        here,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        at: here,
                        anchor,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                        at: here,
                        anchor,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { items, at, anchor }) => Some((
                    Node {
                        value: Value::Seq(items),
                        at,
                    },
                    anchor,
                )),
                Some(Frame::Map {
                    entries,
                    merges,
                    at,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        value: Value::Map(merge_keys(entries, merges, file)?),
                        at,
                    },
                    anchor,
                )),
                None => None,
            },
            Event::Alias(id) => {
                let Some((node, size)) = anchors.get(&id) else {
                    return Err(problem(file, here, "alias of an unknown anchor"));
                };
                expanded += size;
                if expanded > ALIAS_BUDGET {
                    return Err(problem(
                        file,
                        here,
                        format!(
                            "aliases expand to more than {ALIAS_BUDGET} nodes: refusing a document that multiplies itself through anchors"
                        ),
                    ));
                }
                Some((node.clone(), 0))
            }
        };
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor != 0 {
            let size = count(&node);
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None if merge_key => *key = Some((None, node.at)),
                None => {
                    let k = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_owned(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(problem(
                                file,
                                node.at,
                                format!(
                                    "a mapping key must be a string, found {}",
                                    node.type_name()
                                ),
                            ));
                        }
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == k) {
                        return Err(problem(
                            file,
                            node.at,
                            format!(
                                "duplicate key `{k}` (first at line {}): keep one of them",
                                first.key_at.line
                            ),
                        ));
                    }
                    *key = Some((Some(k), node.at));
                }
                Some((None, _)) => merges.push(node),
                Some((Some(k), key_at)) => entries.push(Entry {
                    key: k,
                    key_at,
                    value: node,
                }),
            },
        }
    }
    Ok(docs)
}

/// YAML 1.1's merge key, which `kubectl` honours: `<<: *base` (or a list of
/// them) adds the entries of the aliased mappings that the mapping does not
/// set itself; earlier mappings of a list win. A quoted `"<<"` is a key.
fn merge_keys(
    entries: Vec<Entry>,
    merges: Vec<Node>,
    file: &str,
) -> Result<Vec<Entry>, ConfigError> {
    let mut own = entries;
    let mut merged: Vec<Node> = Vec::new();
    for m in merges {
        match m.value {
            Value::Map(_) => merged.push(m),
            Value::Seq(items) => merged.extend(items),
            _ => {
                return Err(problem(
                    file,
                    m.at,
                    format!(
                        "`<<` (merge key) expects a mapping or a list of mappings, found {}",
                        m.type_name()
                    ),
                ));
            }
        }
    }
    for m in merged {
        let Value::Map(extra) = m.value else {
            return Err(problem(
                file,
                m.at,
                format!("`<<` (merge key) expects mappings, found {}", m.type_name()),
            ));
        };
        for e in extra {
            if !own.iter().any(|o| o.key == e.key) {
                own.push(e);
            }
        }
    }
    Ok(own)
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|e| count(&e.value)).sum(),
        _ => 0,
    }
}

/// The resolution of a plain scalar as `kubectl` does it: Kubernetes reads
/// YAML through go-yaml v2 (YAML 1.1 rules), so `yes`/`no`/`on`/`off` (and
/// `y`/`n`) are booleans, `0777` is octal, `0b101` binary, and `1_000` an
/// integer, beside YAML 1.2's `true`, `0x1F`, `0o17`, `~` and `.inf`. Quoted
/// scalars are always strings.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "y" | "Y" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "n" | "N" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = integer(s) {
        return Value::Int(i);
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let float_chars = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+' | b'_'));
    if float_chars
        && unsigned
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && unsigned.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = s.replace('_', "").parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(s.to_owned())
}

/// An integer in any of YAML 1.1's and 1.2's forms, underscores allowed.
fn integer(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let digits = body.replace('_', "");
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x") {
        (16, d.to_owned())
    } else if let Some(d) = digits.strip_prefix("0o") {
        (8, d.to_owned())
    } else if let Some(d) = digits.strip_prefix("0b") {
        (2, d.to_owned())
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, digits[1..].to_owned())
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if negative { -v } else { v })
}

/// One Istio object read from YAML, in the mesh file's shape.
#[derive(Clone, Debug)]
pub struct Object {
    /// The mesh file's array it belongs to (`virtualService`, …).
    pub array: &'static str,
    /// `name`, `namespace` and the spec's fields.
    pub table: Table,
    /// Where each field was written.
    pub spans: Spans,
}

/// What one YAML file holds for the engine.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// The Istio objects, in file order.
    pub objects: Vec<Object>,
    /// Kubernetes objects that are not mesh config, with their document
    /// (kept for `meshsim import`), in file order.
    pub others: Vec<Node>,
    /// Notes: objects of other kinds, skipped.
    pub notes: Vec<ConfigError>,
    /// Warnings: Istio fields that are not modelled, ignored.
    pub warnings: Vec<ConfigError>,
}

/// Reads the Istio objects of a YAML stream. Every problem found is
/// returned (each with file, line:column and field), not only the first.
pub fn read(source: &str, file: &str) -> Result<Manifests, Vec<ConfigError>> {
    let docs = parse(source, file).map_err(|e| vec![e])?;
    let mut out = Manifests::default();
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    for doc in docs {
        document(doc, file, &mut out, &mut skipped, &mut errors);
    }
    // One note per kind skipped, naming every line; a warning for Istio's
    // own kinds that change what proxies do (Sidecar, EnvoyFilter, …).
    for ((kind, api_version), at) in skipped {
        let lines: Vec<String> = at.iter().map(|l| l.line.to_string()).collect();
        let (what, istio) = if changes_traffic(&kind, &api_version) {
            (
                "changes what the proxies do, and meshsim does not model it: the simulation runs without it",
                true,
            )
        } else {
            ("not mesh config", false)
        };
        let p = problem(
            file,
            at[0],
            format!(
                "skipped {} {kind} (apiVersion {api_version}) at line{} {}: {what} (meshsim reads {})",
                at.len(),
                if at.len() == 1 { "" } else { "s" },
                lines.join(", "),
                KINDS.map(|k| k.0).join(", ")
            ),
        );
        if istio {
            out.warnings.push(p.with_code("MSH0014"));
        } else {
            out.notes.push(p);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Istio objects of kinds meshsim does not read that change traffic: every
/// other `networking.istio.io` kind (Sidecar, EnvoyFilter, WorkloadEntry,
/// WorkloadGroup, ProxyConfig), and AuthorizationPolicy (it can deny).
fn changes_traffic(kind: &str, api_version: &str) -> bool {
    api_version.starts_with("networking.istio.io/")
        || (api_version.starts_with("security.istio.io/") && kind == "AuthorizationPolicy")
}

/// Kinds skipped so far: (kind, apiVersion) and where each object starts.
type Skipped = Vec<((String, String), Vec<LineCol>)>;

fn document(
    doc: Node,
    file: &str,
    out: &mut Manifests,
    skipped: &mut Skipped,
    errors: &mut Vec<ConfigError>,
) {
    let Value::Map(_) = &doc.value else {
        if doc.value != Value::Null {
            errors.push(problem(
                file,
                doc.at,
                format!(
                    "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                    doc.type_name()
                ),
            ));
        }
        return;
    };
    let text = |key: &str| doc.get(key).and_then(Node::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if kind.is_empty() {
        errors.push(problem(
            file,
            doc.at,
            "expected a Kubernetes object with `kind` and `apiVersion` (e.g. kind: VirtualService, apiVersion: networking.istio.io/v1)",
        ));
        return;
    }
    if kind == "List" || kind.ends_with("List") && doc.get("items").is_some() {
        match doc.get("items").map(|n| &n.value) {
            Some(Value::Seq(items)) => {
                for item in items.clone() {
                    document(item, file, out, skipped, errors);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => errors.push(problem(file, doc.at, "`items` of a List must be a list")),
        }
        return;
    }
    let Some(&(_, array)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        let key = (kind.to_owned(), api_version.to_owned());
        match skipped.iter_mut().find(|(k, _)| *k == key) {
            Some((_, lines)) => lines.push(doc.at),
            None => skipped.push((key, vec![doc.at])),
        }
        out.others.push(doc);
        return;
    };
    if !API_VERSIONS.contains(&api_version) {
        errors.push(problem(
            file,
            doc.get("apiVersion").map_or(doc.at, |n| n.at),
            format!(
                "{kind}: expected apiVersion {}, found \"{api_version}\"",
                API_VERSIONS.join(", ")
            ),
        ));
        return;
    }
    let Some(metadata) = doc.get("metadata") else {
        errors.push(problem(
            file,
            doc.at,
            format!("{kind}: expected `metadata` with a `name`"),
        ));
        return;
    };
    let mut table = Table::new();
    let mut spans = Spans::new();
    spans.insert(String::new(), doc.at);
    for key in ["name", "namespace"] {
        match metadata.get(key) {
            Some(Node {
                value: Value::Str(s),
                at,
            }) => {
                table.insert(key.to_owned(), Toml::String(s.clone()));
                spans.insert(key.to_owned(), *at);
            }
            None
            | Some(Node {
                value: Value::Null, ..
            }) if key == "namespace" => {}
            Some(other) => errors.push(problem(
                file,
                other.at,
                format!(
                    "{kind}: metadata.{key}: expected a string, found {}",
                    other.type_name()
                ),
            )),
            None => errors.push(problem(
                file,
                metadata.at,
                format!("{kind}: expected metadata.name"),
            )),
        }
    }
    let name = table
        .get("name")
        .and_then(Toml::as_str)
        .unwrap_or("?")
        .to_owned();
    match doc.get("spec") {
        Some(Node {
            value: Value::Map(entries),
            ..
        }) => {
            let mut ctx = Convert {
                file,
                kind,
                name: &name,
                spans: &mut spans,
                warnings: &mut out.warnings,
                errors,
            };
            for e in entries {
                if e.key == "name" || e.key == "namespace" {
                    ctx.errors.push(problem(
                        file,
                        e.key_at,
                        format!(
                            "{kind} {name}: unknown field `spec.{}`: the object's {0} belongs in metadata",
                            e.key
                        ),
                    ));
                    continue;
                }
                if let Some(v) = ctx.field(&e.key, e.key_at, &e.value, String::new()) {
                    table.insert(e.key.clone(), v);
                }
            }
        }
        Some(other) => errors.push(problem(
            file,
            other.at,
            format!(
                "{kind} {name}: spec: expected a mapping, found {}",
                other.type_name()
            ),
        )),
        None => errors.push(problem(
            file,
            doc.at,
            format!("{kind} {name}: expected `spec`"),
        )),
    }
    out.objects.push(Object {
        array,
        table,
        spans,
    });
}

struct Convert<'a> {
    file: &'a str,
    kind: &'a str,
    name: &'a str,
    spans: &'a mut Spans,
    warnings: &'a mut Vec<ConfigError>,
    errors: &'a mut Vec<ConfigError>,
}

impl Convert<'_> {
    /// Converts the field `key` (written at `key_at`) under `parent`; `None`
    /// drops it (null, or a field that is not modelled, with a warning).
    fn field(&mut self, key: &str, key_at: LineCol, value: &Node, parent: String) -> Option<Toml> {
        let path = if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        };
        self.spans.insert(path.clone(), key_at);
        if let Some(why) = unmodelled(self.kind, &path) {
            self.warnings.push(
                problem(
                    self.file,
                    key_at,
                    format!(
                        "{} {}: spec.{path} is not modelled by meshsim and is ignored ({why})",
                        self.kind, self.name
                    ),
                )
                .with_code("MSH0014"),
            );
            return None;
        }
        self.value(value, path)
    }

    fn value(&mut self, node: &Node, path: String) -> Option<Toml> {
        Some(match &node.value {
            Value::Null => return None,
            Value::Bool(b) => Toml::Boolean(*b),
            Value::Int(i) => Toml::Integer(*i),
            Value::Float(f) => Toml::Float(*f),
            Value::Str(s) => Toml::String(s.clone()),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.spans.insert(p.clone(), item.at);
                    match self.value(item, p) {
                        Some(v) => out.push(v),
                        None if item.value == Value::Null => self.errors.push(problem(
                            self.file,
                            item.at,
                            format!(
                                "{} {}: spec.{path}[{i}]: expected a value, found null",
                                self.kind, self.name
                            ),
                        )),
                        None => {}
                    }
                }
                Toml::Array(out)
            }
            Value::Map(entries) => {
                let mut t = Table::new();
                for e in entries {
                    if let Some(v) = self.field(&e.key, e.key_at, &e.value, path.clone()) {
                        t.insert(e.key.clone(), v);
                    }
                }
                Toml::Table(t)
            }
        })
    }
}

/// Istio fields the engine does not model, per kind, as index-free paths
/// under `spec` (`[]` for any index); `None` for a field that is modelled or
/// not Istio's (the latter is then an unknown-field error).
fn unmodelled(kind: &str, path: &str) -> Option<&'static str> {
    let shape = index_free(path);
    let shape = shape.as_str();
    let table: &[(&str, &str)] = match kind {
        "VirtualService" => &[
            ("tls", "TLS routes are not simulated"),
            ("tcp", "TCP routes are not simulated"),
            ("http[].delegate", "delegate VirtualServices are not read"),
            ("http[].mirror", "traffic mirroring is not simulated"),
            ("http[].mirrors", "traffic mirroring is not simulated"),
            (
                "http[].mirrorPercentage",
                "traffic mirroring is not simulated",
            ),
            ("http[].mirrorPercent", "traffic mirroring is not simulated"),
            (
                "http[].mirror_percent",
                "traffic mirroring is not simulated",
            ),
            ("http[].corsPolicy", "CORS is not simulated"),
            (
                "http[].match[].statPrefix",
                "stats prefixes do not change routing",
            ),
            (
                "http[].redirect.derivePort",
                "redirect ports are kept as written",
            ),
            (
                "http[].directResponse.body.bytes",
                "only string bodies are kept",
            ),
            (
                "http[].fault.delay.exponentialDelay",
                "only fixed delays are simulated",
            ),
            (
                "http[].fault.abort.grpcStatus",
                "only HTTP status aborts are simulated",
            ),
            (
                "http[].fault.abort.http2Error",
                "only HTTP status aborts are simulated",
            ),
        ],
        "DestinationRule" => {
            let policy = shape
                .strip_prefix("trafficPolicy.")
                .or_else(|| shape.strip_prefix("subsets[].trafficPolicy."));
            if let Some(p) = policy {
                let p = p.strip_prefix("portLevelSettings[].").unwrap_or(p);
                return match p {
                    "tls" => Some("mTLS and TLS origination are not simulated"),
                    "tunnel" => Some("tunnels are not simulated"),
                    "proxyProtocol" => Some("the PROXY protocol is not simulated"),
                    "retryBudget" => Some("retry budgets are not modelled; maxRetries is"),
                    "loadBalancer.localityLbSetting" => {
                        Some("localities are not modelled: one locality")
                    }
                    "loadBalancer.warmupDurationSecs" | "loadBalancer.warmup" => {
                        Some("slow-start warm-up is not modelled")
                    }
                    "loadBalancer.consistentHash.httpCookie.attributes" => {
                        Some("cookie attributes do not change hashing")
                    }
                    "connectionPool.tcp.tcpKeepalive" => Some("TCP keepalive is not simulated"),
                    _ => None,
                };
            }
            &[("workloadSelector", "the rule applies to every workload")]
        }
        "Gateway" => &[
            ("servers[].tls", "TLS termination is not simulated"),
            ("servers[].bind", "the gateway listens on every address"),
            (
                "servers[].defaultEndpoint",
                "the gateway forwards to the routed service",
            ),
        ],
        "ServiceEntry" => &[
            ("addresses", "virtual IPs are not modelled"),
            ("workloadSelector", "workload selection is not modelled"),
            ("subjectAltNames", "TLS is not simulated"),
            (
                "endpoints[].network",
                "networks are not modelled: one network",
            ),
            (
                "endpoints[].locality",
                "localities are not modelled: one locality",
            ),
            ("endpoints[].serviceAccount", "identities are not simulated"),
        ],
        _ => &[],
    };
    table.iter().find(|(p, _)| *p == shape).map(|(_, why)| *why)
}

/// `http[2].route[0].x` → `http[].route[].x`.
fn index_free(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '[' => {
                skipping = true;
                out.push('[');
            }
            ']' => {
                skipping = false;
                out.push(']');
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
