//! Writing the config model as Kubernetes YAML: the inverse of
//! [`super::yaml::read`], for `meshsim export` (and later `tune`'s
//! `recommended.yaml`).
//!
//! ```text
//! mesh-shaped table ──per object, in kind order──▶ one document each
//!   apiVersion: networking.istio.io/v1, kind, metadata {name, namespace}, spec
//! ```
//!
//! The emitter is small and deterministic: block style with two-space
//! indents, lists written under their key as `kubectl get -o yaml` writes them
//! (`- ` at the key's indent), keys in the table's order (sorted), empty
//! lists and maps as `[]` and `{}`. A string is written plain only when a
//! YAML reader (the core schema of YAML 1.2, and the YAML 1.1 that
//! Kubernetes' Go reader still speaks) would read it back as the same string;
//! otherwise it is double-quoted, with escapes for line breaks and control
//! characters. Floats use Rust's shortest round-trip form, always with a `.`
//! (and a signed exponent when there is one), so they read back as the same
//! float, never as an integer.
//!
//! Reading back what is written ([`super::yaml::read`]) gives the same
//! tables: `tests` checks it on generated tables with a property test.

use toml::{Table, Value};

use super::yaml::KINDS;

/// The apiVersion every object is written with.
pub const API_VERSION: &str = "networking.istio.io/v1";

/// Whether a field is a meshsim extension (not Istio's: Istio's validation
/// rejects it). Today: `http[].meshsimStickyWeights` and
/// `outlierDetection.meshsimEnvoy`.
pub fn is_extension(key: &str) -> bool {
    key.starts_with("meshsim")
}

/// What to do with meshsim's extensions to Istio's schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Extensions {
    /// Leave them out, with a YAML comment where they were: the output is
    /// what `kubectl apply` and Istio accept.
    #[default]
    Drop,
    /// Keep them, each under a YAML comment saying Istio rejects it: the
    /// output reads back into meshsim unchanged, but Istio refuses it.
    Keep,
}

/// The YAML text of a mesh config, and what was left out.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The documents, `---` between them.
    pub text: String,
    /// One line per extension field left out or kept (`virtualService[reviews].http[0].meshsimStickyWeights`).
    pub extensions: Vec<String>,
    /// How many objects were written.
    pub objects: usize,
}

/// Writes the Istio objects of a mesh-shaped table (`virtualService`,
/// `destinationRule`, `gateway`, `serviceEntry` arrays; other keys are
/// ignored) as Kubernetes documents: VirtualServices, then DestinationRules,
/// Gateways and ServiceEntries, each in table order.
pub fn write_mesh(table: &Table, extensions: Extensions) -> Written {
    let mut out = Written::default();
    let mut docs = Vec::new();
    for (kind, array) in KINDS {
        let Some(Value::Array(items)) = table.get(array) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Value::Table(object) = item else {
                continue;
            };
            let label = object
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| i.to_string(), str::to_owned);
            let mut ctx = Ctx {
                extensions,
                found: Vec::new(),
            };
            docs.push(document(
                kind,
                object,
                &mut ctx,
                &format!("{array}[{label}]"),
            ));
            out.extensions.extend(ctx.found);
        }
    }
    out.objects = docs.len();
    out.text = docs.join("---\n");
    out
}

/// One Kubernetes object: `apiVersion`, `kind`, `metadata` (`name`, and
/// `namespace` when set), `spec` (the table's other fields).
fn document(kind: &str, object: &Table, ctx: &mut Ctx, at: &str) -> String {
    let mut metadata = Table::new();
    let mut spec = Table::new();
    for (k, v) in object {
        if k == "name" || k == "namespace" {
            metadata.insert(k.clone(), v.clone());
        } else {
            spec.insert(k.clone(), v.clone());
        }
    }
    let mut lines = vec![
        Line::new(0, format!("apiVersion: {API_VERSION}")),
        Line::new(0, format!("kind: {kind}")),
    ];
    // `name` first, as kubectl writes metadata.
    lines.push(Line::new(0, "metadata:".to_owned()));
    for key in ["name", "namespace"] {
        if let Some(v) = metadata.get(key) {
            lines.push(Line::new(2, format!("{key}: {}", scalar_or_flow(v))));
        }
    }
    if spec.is_empty() {
        lines.push(Line::new(0, "spec: {}".to_owned()));
    } else {
        lines.push(Line::new(0, "spec:".to_owned()));
        map_lines(&spec, 2, ctx, at, &mut lines);
    }
    render(&lines)
}

/// Writes any value as a YAML document (block style), for other uses
/// (tests, reports).
pub fn to_yaml(value: &Value) -> String {
    let mut ctx = Ctx {
        extensions: Extensions::Keep,
        found: Vec::new(),
    };
    let mut lines = Vec::new();
    match value {
        Value::Table(t) if !t.is_empty() => map_lines(t, 0, &mut ctx, "", &mut lines),
        Value::Array(a) if !a.is_empty() => seq_lines(a, 0, &mut ctx, "", &mut lines),
        other => lines.push(Line::new(0, scalar_or_flow(other))),
    }
    render(&lines)
}

struct Ctx {
    extensions: Extensions,
    found: Vec<String>,
}

/// One output line: indentation and text (a comment starts with `#`).
struct Line {
    indent: usize,
    text: String,
}

impl Line {
    fn new(indent: usize, text: String) -> Self {
        Self { indent, text }
    }

    fn is_comment(&self) -> bool {
        self.text.starts_with('#')
    }
}

fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        out.extend(std::iter::repeat_n(' ', l.indent));
        out.push_str(&l.text);
        out.push('\n');
    }
    out
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Table(t) => t.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    }
}

/// A mapping at `indent`: `key: scalar`, `key:` then a nested mapping two
/// deeper, or `key:` then a list at the same indent (kubectl's style).
fn map_lines(t: &Table, indent: usize, ctx: &mut Ctx, at: &str, out: &mut Vec<Line>) {
    for (k, v) in t {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        if is_extension(k) {
            ctx.found.push(path.clone());
            match ctx.extensions {
                Extensions::Drop => {
                    out.push(Line::new(
                        indent,
                        format!(
                            "# {k} left out: a meshsim extension that Istio rejects (meshsim export --keep-extensions keeps it)"
                        ),
                    ));
                    continue;
                }
                Extensions::Keep => out.push(Line::new(
                    indent,
                    format!("# {k}: a meshsim extension, not Istio: Istio rejects this field"),
                )),
            }
        }
        let key = string(k);
        if is_empty_container(v) {
            out.push(Line::new(indent, format!("{key}: {}", scalar_or_flow(v))));
            continue;
        }
        out.push(Line::new(indent, format!("{key}:")));
        match v {
            Value::Table(inner) => map_lines(inner, indent + 2, ctx, &path, out),
            Value::Array(items) => seq_lines(items, indent, ctx, &path, out),
            _ => unreachable!("scalars are written inline"),
        }
    }
}

/// A list at `indent`: `- scalar`, or a nested block whose first line
/// follows the `- ` (comments before it go above the item).
fn seq_lines(items: &[Value], indent: usize, ctx: &mut Ctx, at: &str, out: &mut Vec<Line>) {
    for (i, item) in items.iter().enumerate() {
        if is_empty_container(item) {
            out.push(Line::new(indent, format!("- {}", scalar_or_flow(item))));
            continue;
        }
        let path = format!("{at}[{i}]");
        let mut inner = Vec::new();
        match item {
            Value::Table(t) => map_lines(t, indent + 2, ctx, &path, &mut inner),
            Value::Array(a) => seq_lines(a, indent + 2, ctx, &path, &mut inner),
            _ => unreachable!("scalars are written inline"),
        }
        let mut first = true;
        for mut line in inner {
            if first && !line.is_comment() {
                line.indent = indent;
                line.text = format!("- {}", line.text);
                first = false;
            }
            out.push(line);
        }
    }
}

/// A scalar, or an empty container in flow style.
fn scalar_or_flow(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => float(*f),
        Value::Boolean(b) => b.to_string(),
        // A table holds no datetime the engine reads; keep its text.
        Value::Datetime(d) => quoted(&d.to_string()),
        Value::Array(a) if a.is_empty() => "[]".to_owned(),
        Value::Table(t) if t.is_empty() => "{}".to_owned(),
        Value::Array(_) | Value::Table(_) => unreachable!("containers are written as blocks"),
    }
}

/// A float that reads back as the same float: Rust's shortest round-trip
/// digits, with a `.` and a signed exponent (`1.0e+300`, `2.5e-7`), so YAML
/// 1.1 readers see a float too; `.inf`, `-.inf`, `.nan`.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let s = format!("{f:?}");
    let Some((mantissa, exponent)) = s.split_once('e') else {
        // Debug always writes a fractional part (`100.0`).
        return s;
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.to_owned()
    } else {
        format!("{mantissa}.0")
    };
    let exponent = if exponent.starts_with('-') {
        exponent.to_owned()
    } else {
        format!("+{exponent}")
    };
    format!("{mantissa}e{exponent}")
}

/// A string as a YAML scalar: plain when that reads back as the same
/// string, double-quoted otherwise.
pub fn string(s: &str) -> String {
    if needs_quotes(s) {
        quoted(s)
    } else {
        s.to_owned()
    }
}

/// Whether a plain scalar would be read as something else than `s` (or not
/// be a scalar at all). Conservative: quoting a string that did not need it
/// is harmless.
fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    let last = s.chars().next_back().unwrap_or(first);
    if first.is_whitespace() || last.is_whitespace() || last == ':' {
        return true;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.starts_with("...") {
        return true;
    }
    if s.chars().any(needs_escape) {
        return true;
    }
    // The words of the core schema and of YAML 1.1 (booleans, null, the
    // merge key), in any case.
    const WORDS: [&str; 16] = [
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "+.inf", "-.inf",
        ".nan", "<<", "=",
    ];
    if WORDS.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        return true;
    }
    number_like(s)
}

/// Integers and floats in any base or notation (YAML 1.1's `1_000`, `1:30`
/// and dates too): a digit (after an optional sign or dot) and only the
/// characters numbers are made of. Durations such as `10s` or `1h30m` are
/// not number-like.
fn number_like(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let unsigned = unsigned.strip_prefix('.').unwrap_or(unsigned);
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_hexdigit() || "+-._:xXoObB".contains(c))
}

/// Characters a plain scalar must not hold: line breaks, tabs, other
/// control characters, and what YAML does not count as printable (or YAML
/// 1.1 counts as a line break).
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// A double-quoted scalar with YAML's escapes.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use proptest::prelude::*;

    /// The tables `yaml::read` gives back for `text`, in the mesh file's shape.
    fn read_back(text: &str) -> Table {
        let m = yaml::read(text, "out.yaml").unwrap_or_else(|e| {
            panic!(
                "{}\n--- in ---\n{text}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let mut out = Table::new();
        for o in m.objects {
            let Value::Array(list) = out
                .entry(o.array.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            else {
                unreachable!()
            };
            list.push(Value::Table(o.table));
        }
        out
    }

    fn istio_only(t: &Table) -> Table {
        t.iter()
            .filter(|(k, _)| KINDS.iter().any(|(_, a)| a == k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    const BOOKINFO: &str = include_str!("../../../../topologies/bookinfo.toml");

    #[test]
    fn a_virtual_service_is_written_as_kubectl_writes_it() {
        let t: Table = toml::from_str(
            r#"
[[virtualService]]
name = "reviews"
namespace = "default"
hosts = ["reviews"]
[[virtualService.http]]
match = [{ headers = { end-user = { exact = "jason" } } }]
route = [{ destination = { host = "reviews", subset = "v2" } }]
timeout = "1.5s"
[[virtualService.http]]
route = [
  { destination = { host = "reviews", subset = "v1" }, weight = 90 },
  { destination = { host = "reviews", subset = "v3" }, weight = 10 },
]
fault = { delay = { fixedDelay = "7s", percentage = { value = 0.1 } } }
"#,
        )
        .unwrap();
        let w = write_mesh(&t, Extensions::Drop);
        assert_eq!(
            w.text,
            "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
    timeout: 1.5s
  - fault:
      delay:
        fixedDelay: 7s
        percentage:
          value: 0.1
    route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v3
      weight: 10
"
        );
        assert_eq!(read_back(&w.text), t);
    }

    #[test]
    fn objects_come_in_kind_order_one_document_each() {
        let t: Table = toml::from_str(
            r#"
[[serviceEntry]]
name = "api"
hosts = ["api.example.com"]
[[destinationRule]]
name = "b"
host = "b"
[[virtualService]]
name = "a"
hosts = ["a"]
[[destinationRule]]
name = "c"
host = "c"
"#,
        )
        .unwrap();
        let w = write_mesh(&t, Extensions::Drop);
        assert_eq!(w.objects, 4);
        let kinds: Vec<&str> = w
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "VirtualService",
                "DestinationRule",
                "DestinationRule",
                "ServiceEntry"
            ]
        );
        assert_eq!(w.text.matches("\n---\n").count(), 3);
        assert!(!w.text.contains("namespace"), "{}", w.text);
        assert_eq!(read_back(&w.text), t);
    }

    #[test]
    fn the_bookinfo_config_reads_back_to_the_same_tables_and_the_same_config() {
        let all: Table = toml::from_str(BOOKINFO).unwrap();
        let istio = istio_only(&all);
        let w = write_mesh(&istio, Extensions::Drop);
        assert!(w.extensions.is_empty());
        assert_eq!(read_back(&w.text), istio);
        // The registry from TOML plus the objects from the written YAML
        // validate into the same config as the original file.
        let registry: Table = all
            .iter()
            .filter(|(k, _)| !istio.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut sources = crate::config::source::Sources::default();
        let mut errors = Vec::new();
        crate::config::source::merge(
            &mut sources,
            &[
                (
                    "registry.toml".to_owned(),
                    toml::to_string(&registry).unwrap(),
                ),
                ("bookinfo.yaml".to_owned(), w.text.clone()),
            ],
            &crate::config::source::MESH_ARRAYS,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let (from_yaml, _) = crate::config::source::validate_table(&sources).unwrap();
        let (original, _) = crate::config::from_toml(BOOKINFO, None).unwrap();
        assert_eq!(format!("{from_yaml:?}"), format!("{original:?}"));
    }

    #[test]
    fn the_sticky_weights_extension_is_left_out_with_a_comment_or_kept_on_request() {
        let t: Table = toml::from_str(
            r#"
[[virtualService]]
name = "web"
hosts = ["web"]
[[virtualService.http]]
meshsimStickyWeights = { httpHeaderName = "x-user" }
route = [{ destination = { host = "web", subset = "v1" }, weight = 50 }, { destination = { host = "web", subset = "v2" }, weight = 50 }]
"#,
        )
        .unwrap();
        let dropped = write_mesh(&t, Extensions::Drop);
        assert_eq!(
            dropped.extensions,
            ["virtualService[web].http[0].meshsimStickyWeights"]
        );
        assert!(
            dropped.text.contains(
                "  # meshsimStickyWeights left out: a meshsim extension that Istio rejects"
            ),
            "{}",
            dropped.text
        );
        assert!(!dropped.text.contains("httpHeaderName"));
        let back = read_back(&dropped.text);
        assert!(
            back["virtualService"][0]["http"][0]
                .get("meshsimStickyWeights")
                .is_none()
        );

        let kept = write_mesh(&t, Extensions::Keep);
        assert!(
            kept.text
                .contains("# meshsimStickyWeights: a meshsim extension, not Istio")
        );
        assert_eq!(read_back(&kept.text), t);
    }

    #[test]
    fn strings_that_would_read_as_something_else_are_quoted() {
        for (s, want) in [
            ("yes", "\"yes\""),
            ("No", "\"No\""),
            ("1.5", "\"1.5\""),
            ("0x1F", "\"0x1F\""),
            ("1e3", "\"1e3\""),
            ("1_000", "\"1_000\""),
            ("2024-01-01", "\"2024-01-01\""),
            (": x", "\": x\""),
            ("#a", "\"#a\""),
            ("a #b", "\"a #b\""),
            (" lead", "\" lead\""),
            ("trail ", "\"trail \""),
            ("", "\"\""),
            ("~", "\"~\""),
            ("a\nb", "\"a\\nb\""),
            ("tab\there", "\"tab\\there\""),
            ("q\"uo\\te", "q\"uo\\te"),
            ("*", "\"*\""),
            ("^/api/v[0-9]+", "^/api/v[0-9]+"),
            ("[a-z]+\\d", "\"[a-z]+\\\\d\""),
            ("10s", "10s"),
            ("1h30m", "1h30m"),
            (
                "reviews.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
            ),
            ("héllo ✓", "héllo ✓"),
            ("bell\u{7}", "\"bell\\x07\""),
            ("line\u{2028}sep", "\"line\\u2028sep\""),
        ] {
            assert_eq!(string(s), want, "{s:?}");
        }
    }

    #[test]
    fn floats_keep_a_dot_and_read_back_exactly() {
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(100.0), "100.0");
        assert_eq!(float(1e300), "1.0e+300");
        assert_eq!(float(2.5e-7), "2.5e-7");
        assert_eq!(float(-0.0), "-0.0");
        assert_eq!(float(f64::INFINITY), ".inf");
        assert_eq!(float(f64::NEG_INFINITY), "-.inf");
        assert_eq!(float(f64::NAN), ".nan");
        let doc = to_yaml(&Value::Table(
            [("x".to_owned(), Value::Float(f64::NAN))]
                .into_iter()
                .collect(),
        ));
        let n = yaml::parse(&doc, "t.yaml").unwrap().remove(0);
        assert!(matches!(n.get("x").unwrap().value, yaml::Value::Float(f) if f.is_nan()));
    }

    // ---- the property: write → read gives the same tables ----

    fn tricky() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("yes".to_owned()),
            Just("no".to_owned()),
            Just("ON".to_owned()),
            Just("1.5".to_owned()),
            Just("-3".to_owned()),
            Just(".5".to_owned()),
            Just("1e3".to_owned()),
            Just(".inf".to_owned()),
            Just("null".to_owned()),
            Just("~".to_owned()),
            Just(": x".to_owned()),
            Just("a: b".to_owned()),
            Just("x:".to_owned()),
            Just("#a".to_owned()),
            Just("a #b".to_owned()),
            Just("a#b".to_owned()),
            Just(" lead".to_owned()),
            Just("trail ".to_owned()),
            Just(String::new()),
            Just("- item".to_owned()),
            Just("---".to_owned()),
            Just("...".to_owned()),
            Just("{a: 1}".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("'single'".to_owned()),
            Just("\"double\"".to_owned()),
            Just("multi\nline\n".to_owned()),
            Just("back\\slash".to_owned()),
            Just("héllo wörld ✓ 日本".to_owned()),
            Just("emoji 🚀".to_owned()),
            Just("10s".to_owned()),
            Just("1h30m".to_owned()),
            Just("0x1F".to_owned()),
            Just("0o17".to_owned()),
            Just("1:30".to_owned()),
            Just("&anchor".to_owned()),
            Just("*alias".to_owned()),
            Just("!tag".to_owned()),
            Just("%pct".to_owned()),
            Just("@at".to_owned()),
            Just("`tick".to_owned()),
            Just("|pipe".to_owned()),
            Just(">fold".to_owned()),
            Just("?q".to_owned()),
            Just("<<".to_owned()),
            "[a-z][a-z0-9-]{0,12}",
            "\\PC{0,12}",
            any::<String>(),
        ]
    }

    fn duration() -> impl Strategy<Value = String> {
        prop_oneof![
            (1u32..10_000).prop_map(|n| format!("{n}ms")),
            (1u32..600).prop_map(|n| format!("{n}s")),
            (1u32..100, 1u32..10).prop_map(|(a, b)| format!("{a}.{b}s")),
            (1u32..5, 1u32..59).prop_map(|(h, m)| format!("{h}h{m}m")),
        ]
    }

    fn float_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan()),
            Just(0.0),
            Just(1.0),
            Just(1e300),
            Just(5e-324),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            (0u32..100).prop_map(f64::from),
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            tricky().prop_map(Value::String),
            any::<i64>().prop_map(Value::Integer),
            float_value().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
        ]
    }

    /// Any nesting of maps and lists (empty ones included) with tricky keys.
    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(tricky(), inner, 0..4)
                    .prop_map(|m| Value::Table(m.into_iter().collect())),
            ]
        })
    }

    fn string_map() -> impl Strategy<Value = Table> {
        prop::collection::btree_map(tricky(), tricky().prop_map(Value::String), 0..3)
            .prop_map(|m| m.into_iter().collect())
    }

    fn meta(name: String, namespace: Option<String>) -> Table {
        let mut t = Table::new();
        t.insert("name".to_owned(), Value::String(name));
        if let Some(ns) = namespace {
            t.insert("namespace".to_owned(), Value::String(ns));
        }
        t
    }

    fn destination() -> impl Strategy<Value = Value> {
        (tricky(), tricky(), 0i64..=100).prop_map(|(host, subset, weight)| {
            let mut d = Table::new();
            d.insert("host".to_owned(), Value::String(host));
            d.insert("subset".to_owned(), Value::String(subset));
            let mut r = Table::new();
            r.insert("destination".to_owned(), Value::Table(d));
            r.insert("weight".to_owned(), Value::Integer(weight));
            Value::Table(r)
        })
    }

    fn http_route() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(destination(), 1..4),
            prop::collection::btree_map(tricky(), tricky(), 0..3),
            prop::option::of(duration()),
            prop::option::of(float_value()),
            prop::option::of(tree()),
        )
            .prop_map(|(route, headers, timeout, pct, extra)| {
                let mut h = Table::new();
                h.insert("route".to_owned(), Value::Array(route));
                if !headers.is_empty() {
                    let m: Table = headers
                        .into_iter()
                        .map(|(k, v)| {
                            let mut exact = Table::new();
                            exact.insert("exact".to_owned(), Value::String(v));
                            (k, Value::Table(exact))
                        })
                        .collect();
                    let mut matcher = Table::new();
                    matcher.insert("headers".to_owned(), Value::Table(m));
                    h.insert(
                        "match".to_owned(),
                        Value::Array(vec![Value::Table(matcher)]),
                    );
                }
                if let Some(t) = timeout {
                    h.insert("timeout".to_owned(), Value::String(t));
                }
                if let Some(p) = pct {
                    let mut value = Table::new();
                    value.insert("value".to_owned(), Value::Float(p));
                    let mut abort = Table::new();
                    abort.insert("httpStatus".to_owned(), Value::Integer(503));
                    abort.insert("percentage".to_owned(), Value::Table(value));
                    let mut fault = Table::new();
                    fault.insert("abort".to_owned(), Value::Table(abort));
                    h.insert("fault".to_owned(), Value::Table(fault));
                }
                // Shapes the schema does not have (the reader passes them
                // through; the shape check comes later).
                if let Some(x) = extra {
                    h.insert("x-extra".to_owned(), x);
                }
                Value::Table(h)
            })
    }

    fn virtual_service() -> impl Strategy<Value = Value> {
        (
            tricky(),
            prop::option::of(tricky()),
            prop::collection::vec(tricky().prop_map(Value::String), 0..3),
            prop::collection::vec(http_route(), 0..3),
        )
            .prop_map(|(name, ns, hosts, http)| {
                let mut t = meta(name, ns);
                t.insert("hosts".to_owned(), Value::Array(hosts));
                t.insert("http".to_owned(), Value::Array(http));
                Value::Table(t)
            })
    }

    fn destination_rule() -> impl Strategy<Value = Value> {
        (
            tricky(),
            prop::option::of(tricky()),
            tricky(),
            prop::collection::vec((tricky(), string_map()), 0..3),
            0u32..100,
            duration(),
        )
            .prop_map(|(name, ns, host, subsets, errors, interval)| {
                let mut t = meta(name, ns);
                t.insert("host".to_owned(), Value::String(host));
                let subsets = subsets
                    .into_iter()
                    .map(|(n, labels)| {
                        let mut s = Table::new();
                        s.insert("name".to_owned(), Value::String(n));
                        s.insert("labels".to_owned(), Value::Table(labels));
                        Value::Table(s)
                    })
                    .collect();
                t.insert("subsets".to_owned(), Value::Array(subsets));
                let mut od = Table::new();
                od.insert(
                    "consecutive5xxErrors".to_owned(),
                    Value::Integer(i64::from(errors)),
                );
                od.insert("interval".to_owned(), Value::String(interval));
                let mut tp = Table::new();
                tp.insert("outlierDetection".to_owned(), Value::Table(od));
                t.insert("trafficPolicy".to_owned(), Value::Table(tp));
                Value::Table(t)
            })
    }

    fn mesh() -> impl Strategy<Value = Table> {
        (
            prop::collection::vec(virtual_service(), 0..3),
            prop::collection::vec(destination_rule(), 0..3),
        )
            .prop_map(|(vs, dr)| {
                let mut t = Table::new();
                if !vs.is_empty() {
                    t.insert("virtualService".to_owned(), Value::Array(vs));
                }
                if !dr.is_empty() {
                    t.insert("destinationRule".to_owned(), Value::Array(dr));
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn what_is_written_reads_back_as_the_same_tables(t in mesh()) {
            let w = write_mesh(&t, Extensions::Drop);
            prop_assert_eq!(read_back(&w.text), t, "{}", w.text);
        }

        #[test]
        fn any_string_reads_back_as_itself(s in tricky()) {
            let mut t = Table::new();
            t.insert(s.clone(), Value::String(s.clone()));
            let doc = to_yaml(&Value::Table(t));
            let n = yaml::parse(&doc, "t.yaml").unwrap().remove(0);
            let yaml::Value::Map(entries) = n.value else { panic!("{doc}") };
            prop_assert_eq!(&entries[0].key, &s, "{}", doc);
            prop_assert_eq!(&entries[0].value.value, &yaml::Value::Str(s.clone()), "{}", doc);
        }
    }
}
