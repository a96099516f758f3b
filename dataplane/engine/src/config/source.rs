//! Mesh config from several sources: TOML mesh files and Kubernetes YAML,
//! as files or directories, merged into one mesh-shaped table that remembers
//! where every object came from.
//!
//! ```text
//! paths ──expand dirs──▶ files ──TOML / YAML──▶ objects (+ spans) ──merge──▶ Sources
//!                                                                  { table, origins, notes }
//! ```
//!
//! The table is what one TOML mesh file would hold, so `--set`, sweeps and
//! validation see one model whatever the syntax. [`Origins`] turns a field
//! path found later (`virtualService[reviews].http[0].timeout`) back into the
//! file and line:column where the user wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::error::{ConfigError, ConfigErrors, FieldPath, Segment, line_col};
use super::file as t;
use super::validate::Warning;
use super::yaml::{self, Spans};
use super::{Config, toml_error, validate};

/// The Istio objects' arrays, in a mesh file and in an experiment.
pub const ISTIO_ARRAYS: [&str; 4] = [
    "virtualService",
    "destinationRule",
    "gateway",
    "serviceEntry",
];

/// Every array of a whole mesh file (the registry and the proxy's listeners too).
pub const MESH_ARRAYS: [&str; 6] = [
    "service",
    "listener",
    "virtualService",
    "destinationRule",
    "gateway",
    "serviceEntry",
];

/// Where one object came from: its file and the line:column of its fields.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file, as the user named it.
    pub file: String,
    /// Field paths (index form, relative to the object) → line:column.
    pub spans: Spans,
}

/// Where every object of a merged table came from, by array.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Array path in index form (`virtualService`, `timeline[2].push.gateway`)
    /// → one origin per element.
    arrays: BTreeMap<String, Vec<Origin>>,
}

impl Origins {
    /// Records the origin of the next element of the array at `array`.
    pub fn push(&mut self, array: &str, origin: Origin) {
        self.arrays
            .entry(array.to_owned())
            .or_default()
            .push(origin);
    }

    /// Moves every array under `prefix` (`timeline[2].push`).
    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        Self {
            arrays: self
                .arrays
                .into_iter()
                .map(|(k, v)| (format!("{prefix}.{k}"), v))
                .collect(),
        }
    }

    /// Adds every array of `other`.
    pub fn extend(&mut self, other: Self) {
        for (k, v) in other.arrays {
            self.arrays.entry(k).or_default().extend(v);
        }
    }

    /// Whether no object was recorded.
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// The origin of the object the path points into, and the path relative to it.
    fn find<'a>(&'a self, path: &'a FieldPath) -> Option<(&'a Origin, &'a [Segment])> {
        let segs = &path.0;
        (1..segs.len()).find_map(|k| {
            let Segment::Index { index, .. } = segs[k] else {
                return None;
            };
            let origin = self.arrays.get(&index_form(&segs[..k]))?.get(index)?;
            Some((origin, &segs[k + 1..]))
        })
    }

    /// Sets the file and line:column of a problem found in an object that
    /// came from a file; returns whether it did.
    pub fn locate(&self, e: &mut ConfigError) -> bool {
        let Some((origin, rest)) = self.find(&e.path) else {
            return false;
        };
        e.file = Some(origin.file.clone());
        e.location = (0..=rest.len())
            .rev()
            .find_map(|n| origin.spans.get(&index_form(&rest[..n])).copied());
        true
    }
}

/// A path in index form, `http[0].route[1].weight`.
fn index_form(segs: &[Segment]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index { index, .. } => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Mesh config read from several files, merged.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Mesh-file-shaped: `virtualService = [...]`, `destinationRule = [...]`, ….
    pub table: Table,
    /// Where each object came from.
    pub origins: Origins,
    /// Kubernetes objects of other kinds, skipped (one note each).
    pub notes: Vec<ConfigError>,
    /// Istio fields that are not modelled, ignored (one warning each).
    pub warnings: Vec<Warning>,
    /// The other Kubernetes objects, with their file (for `meshsim import`).
    pub others: Vec<(String, yaml::Node)>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Each file as it was read: (name as shown, text).
    pub texts: Vec<(String, String)>,
}

/// `runs/../istio/./a.yaml` → `istio/a.yaml`: a path as the user would write
/// it, for messages (lexical only; symbolic links are not followed).
pub fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Whether a path names a YAML file (by its extension).
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The files a path stands for: itself, or a directory's `.yaml`, `.yml`,
/// `.json` and `.toml` files in name order (not recursive, as `kubectl
/// apply -f DIR`).
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let shown = path.display().to_string();
    let fail = |message: String| ConfigError {
        file: Some(shown.clone()),
        path: FieldPath::root(),
        code: None,
        message,
        location: None,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| fail(format!("cannot read the directory: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && (is_yaml(p) || p.extension().and_then(|e| e.to_str()) == Some("toml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fail(
            "no .yaml, .yml, .json or .toml file in this directory: point at the directory of your Istio manifests".to_owned(),
        ));
    }
    Ok(files)
}

/// Reads and merges mesh config from `paths` (files or directories; TOML by
/// the `.toml` extension, Kubernetes YAML otherwise). A TOML file may hold
/// only the arrays named in `arrays`. Every object's shape is checked
/// (unknown fields, types), each problem with file, line:column and path.
pub fn read(paths: &[PathBuf], arrays: &[&str]) -> Result<Sources, ConfigErrors> {
    let mut out = Sources::default();
    let mut errors = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(files) => out.files.extend(files),
            Err(e) => errors.push(e),
        }
    }
    let mut texts = Vec::new();
    for file in &out.files {
        // Read as given; shown as a person would write it.
        let shown = tidy(file).display().to_string();
        match std::fs::read(file) {
            Err(e) => errors.push(whole_file(
                &shown,
                format!("cannot read the mesh config: {e}"),
            )),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => texts.push((shown, t)),
                Err(_) => errors.push(whole_file(
                    &shown,
                    "not a text file (invalid UTF-8): expected Istio YAML or a TOML mesh file",
                )),
            },
        }
    }
    merge(&mut out, &texts, arrays, &mut errors);
    out.texts = texts;
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads each `(file name, text)` (YAML when the name says so, TOML
/// otherwise) and appends its objects to `out`.
pub fn merge(
    out: &mut Sources,
    texts: &[(String, String)],
    arrays: &[&str],
    errors: &mut Vec<ConfigError>,
) {
    for (shown, text) in texts {
        let objects = if is_yaml(Path::new(shown)) {
            yaml_objects(text, shown, out, errors)
        } else {
            toml_objects(text, shown, arrays, errors)
        };
        for (array, table, spans) in objects {
            let origin = Origin {
                file: shown.clone(),
                spans,
            };
            let list = out
                .table
                .entry(array.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(list) = list else {
                unreachable!("only arrays are inserted")
            };
            let index = list.len();
            check_shape(array, index, &table, &origin, errors);
            list.push(Value::Table(table));
            out.origins.push(array, origin);
        }
    }
}

fn whole_file(file: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: Some(file.to_owned()),
        path: FieldPath::root(),
        code: None,
        message: message.into(),
        location: None,
    }
}

type Object = (&'static str, Table, Spans);

fn yaml_objects(
    text: &str,
    file: &str,
    out: &mut Sources,
    errors: &mut Vec<ConfigError>,
) -> Vec<Object> {
    match yaml::read(text, file) {
        Ok(m) => {
            out.notes.extend(m.notes);
            out.warnings.extend(m.warnings);
            out.others
                .extend(m.others.into_iter().map(|n| (file.to_owned(), n)));
            m.objects
                .into_iter()
                .map(|o| (o.array, o.table, o.spans))
                .collect()
        }
        Err(e) => {
            errors.extend(e);
            Vec::new()
        }
    }
}

fn toml_objects(
    text: &str,
    file: &str,
    arrays: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Vec<Object> {
    let values: Table = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(toml_error(&e, text, Some(file)));
            return Vec::new();
        }
    };
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut objects = Vec::new();
    for (key, value) in doc.get_ref().iter() {
        let name: &str = key.get_ref().as_ref();
        let at = line_col(text, key.span().start);
        let Some(&array) = MESH_ARRAYS.iter().find(|a| **a == name) else {
            errors.push(ConfigError {
                file: Some(file.to_owned()),
                path: FieldPath::root().key(name),
                code: None,
                message: format!("unexpected `{name}`: expected only {}", arrays.join(", ")),
                location: Some(at),
            });
            continue;
        };
        if !arrays.contains(&array) {
            errors.push(ConfigError {
                file: Some(file.to_owned()),
                path: FieldPath::root().key(name),
                code: None,
                message: if array == "service" {
                    "a mesh file included by an experiment must not define [[service]]: the experiment's topology generates the registry; keep only virtualService, destinationRule, gateway and serviceEntry".to_owned()
                } else {
                    format!("unexpected `{name}` here: expected only {}", arrays.join(", "))
                },
                location: Some(at),
            });
            continue;
        }
        let DeValue::Array(items) = value.get_ref() else {
            errors.push(ConfigError {
                file: Some(file.to_owned()),
                path: FieldPath::root().key(name),
                code: None,
                message: format!("expected an array of tables ([[{name}]])"),
                location: Some(at),
            });
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let mut spans = Spans::new();
            spans.insert(String::new(), line_col(text, item.span().start));
            toml_spans(item.get_ref(), text, String::new(), &mut spans);
            let table = match values.get(name).and_then(|a| a.get(i)) {
                Some(Value::Table(t)) => t.clone(),
                _ => {
                    errors.push(ConfigError {
                        file: Some(file.to_owned()),
                        path: FieldPath::root().key(name),
                        code: None,
                        message: format!("expected an array of tables ([[{name}]])"),
                        location: Some(line_col(text, item.span().start)),
                    });
                    continue;
                }
            };
            objects.push((array, table, spans));
        }
    }
    objects
}

fn toml_spans(v: &DeValue<'_>, text: &str, path: String, spans: &mut Spans) {
    match v {
        DeValue::Table(t) => {
            for (k, child) in t.iter() {
                let p = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                let at = match child.get_ref() {
                    DeValue::Table(_) | DeValue::Array(_) => child.span().start,
                    _ => k.span().start,
                };
                spans.insert(p.clone(), line_col(text, at));
                toml_spans(child.get_ref(), text, p, spans);
            }
        }
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                spans.insert(p.clone(), line_col(text, item.span().start));
                toml_spans(item.get_ref(), text, p, spans);
            }
        }
        _ => {}
    }
}

/// Checks that an object deserializes into its Istio type; a failure names
/// the field and where it is written.
fn check_shape(
    array: &str,
    index: usize,
    table: &Table,
    origin: &Origin,
    errors: &mut Vec<ConfigError>,
) {
    fn try_as<T: DeserializeOwned>(v: Value) -> Result<(), (Vec<Segment>, String)> {
        serde_path_to_error::deserialize::<_, T>(v)
            .map(|_| ())
            .map_err(|e| {
                let segs = e
                    .path()
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Seq { index } => Some(Segment::Index {
                            index: *index,
                            label: None,
                        }),
                        serde_path_to_error::Segment::Map { key } => {
                            Some(Segment::Key(key.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                (segs, e.into_inner().message().trim().to_owned())
            })
    }
    let v = Value::Table(table.clone());
    let result = match array {
        "virtualService" => try_as::<t::VirtualService>(v),
        "destinationRule" => try_as::<t::DestinationRule>(v),
        "gateway" => try_as::<t::Gateway>(v),
        "serviceEntry" => try_as::<t::ServiceEntry>(v),
        "service" => try_as::<t::ServiceSpec>(v),
        "listener" => try_as::<t::Listener>(v),
        _ => Ok(()),
    };
    let Err((rest, message)) = result else { return };
    let label = table.get("name").and_then(Value::as_str);
    let mut path = FieldPath::root().key(array);
    path.0.push(Segment::Index {
        index,
        label: label.map(str::to_owned),
    });
    path.0.extend(rest.iter().cloned());
    let location = (0..=rest.len())
        .rev()
        .find_map(|n| origin.spans.get(&index_form(&rest[..n])).copied());
    errors.push(ConfigError {
        file: Some(origin.file.clone()),
        path,
        code: None,
        message,
        location,
    });
}

/// Reads, merges and validates a whole mesh config (registry, listeners and
/// Istio objects) from TOML and YAML files or directories. One `.toml` file
/// alone is read exactly as [`super::from_toml`] reads it.
pub fn load(paths: &[PathBuf]) -> Result<(Config, Vec<Warning>, Sources), ConfigErrors> {
    if let [one] = paths
        && !one.is_dir()
        && !is_yaml(one)
    {
        let shown = one.display().to_string();
        let text = std::fs::read_to_string(one).map_err(|e| {
            ConfigErrors(vec![whole_file(
                &shown,
                format!("cannot read the mesh config: {e}"),
            )])
        })?;
        let (config, warnings) = super::from_toml(&text, Some(&shown))?;
        let sources = Sources {
            files: vec![one.clone()],
            ..Sources::default()
        };
        return Ok((config, warnings, sources));
    }
    let sources = read(paths, &MESH_ARRAYS)?;
    let (config, warnings) = validate_table(&sources)?;
    let mut all = sources.warnings.clone();
    all.extend(warnings);
    Ok((config, all, sources))
}

/// Validates the merged table of `sources`, every problem located in the
/// file it came from.
pub fn validate_table(sources: &Sources) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let parsed: t::MeshConfig =
        Value::Table(sources.table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                ConfigErrors(vec![ConfigError {
                    file: None,
                    path: FieldPath::root(),
                    code: None,
                    message: e.message().trim().to_owned(),
                    location: None,
                }])
            })?;
    match validate(parsed) {
        Ok((config, mut warnings)) => {
            for w in &mut warnings {
                sources.origins.locate(w);
            }
            Ok((config, warnings))
        }
        Err(mut errors) => {
            for e in &mut errors {
                sources.origins.locate(e);
            }
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LineCol;

    const REGISTRY: &str = r#"
[[service]]
name = "reviews"
port = 9080
endpoints = [
  { address = "10.0.0.1:9080", labels = { app = "reviews", version = "v1" } },
  { address = "10.0.0.2:9080", labels = { app = "reviews", version = "v2" } },
]
"#;

    const ISTIO: &str = "\
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
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1beta1
  kind: DestinationRule
  metadata:
    name: reviews
  spec:
    host: reviews
    subsets:
    - name: v1
      labels:
        version: v1
    - name: v2
      labels:
        version: v2
";

    fn texts(yaml: &str) -> Vec<(String, String)> {
        vec![
            ("registry.toml".to_owned(), REGISTRY.to_owned()),
            ("istio.yaml".to_owned(), yaml.to_owned()),
        ]
    }

    fn sources(yaml: &str) -> Result<Sources, Vec<ConfigError>> {
        let mut out = Sources::default();
        let mut errors = Vec::new();
        merge(&mut out, &texts(yaml), &MESH_ARRAYS, &mut errors);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    #[test]
    fn paths_are_shown_as_the_user_would_write_them() {
        assert_eq!(
            tidy(Path::new("runs/../istio/./a.yaml")),
            Path::new("istio/a.yaml")
        );
        assert_eq!(tidy(Path::new("../x/../y")), Path::new("../y"));
        assert_eq!(tidy(Path::new("a/..")), Path::new("."));
    }

    #[test]
    fn yaml_and_toml_merge_into_one_config_that_routes() {
        let s = sources(ISTIO).unwrap();
        let (config, _) = validate_table(&s).unwrap();
        assert_eq!(config.virtual_services.len(), 1);
        assert_eq!(config.source.destination_rule.len(), 1);
        assert_eq!(s.notes.len(), 1);
        let note = s.notes[0].to_string();
        assert!(
            note.starts_with("istio.yaml:23:1: skipped 1 Deployment (apiVersion apps/v1) at line 23: not mesh config"),
            "{note}"
        );
    }

    #[test]
    fn a_typo_in_yaml_is_an_error_at_its_line_with_the_field_path() {
        let bad = ISTIO.replace("        subset: v1", "        subsett: v1");
        let e = sources(&bad).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].file.as_deref(), Some("istio.yaml"));
        assert_eq!(
            e[0].location,
            Some(LineCol {
                line: 21,
                column: 9
            })
        );
        assert_eq!(
            e[0].path.to_string(),
            "virtualService[reviews].http[1].route[0].destination.subsett"
        );
        assert!(e[0].message.contains("unknown field `subsett`"), "{}", e[0]);
    }

    #[test]
    fn a_wrong_type_in_yaml_names_the_field_and_line() {
        let bad = ISTIO.replace("  hosts:\n  - reviews\n", "  hosts: reviews\n");
        let e = sources(&bad).unwrap_err();
        assert_eq!(e[0].path.to_string(), "virtualService[reviews].hosts");
        assert_eq!(e[0].location, Some(LineCol { line: 7, column: 3 }));
    }

    #[test]
    fn an_istio_field_that_is_not_modelled_is_a_warning_not_a_drop_in_silence() {
        let with_mirror = ISTIO.replace(
            "  - route:\n    - destination:\n        host: reviews\n        subset: v1\n",
            "  - route:\n    - destination:\n        host: reviews\n        subset: v1\n    mirror:\n      host: reviews\n",
        );
        let s = sources(&with_mirror).unwrap();
        assert_eq!(s.warnings.len(), 1);
        let w = s.warnings[0].to_string();
        assert!(
            w.starts_with(
                "istio.yaml:22:5: VirtualService reviews: spec.http[1].mirror is not modelled"
            ),
            "{w}"
        );
    }

    #[test]
    fn a_validation_error_points_into_the_yaml_file() {
        let bad = ISTIO.replace(
            "  - route:\n",
            "  - match:\n    - uri:\n        regex: \"(\"\n    route:\n",
        );
        let s = sources(&bad).unwrap();
        let e = validate_table(&s).unwrap_err();
        let first = &e.0[0];
        assert_eq!(first.file.as_deref(), Some("istio.yaml"));
        assert_eq!(
            first.location,
            Some(LineCol {
                line: 20,
                column: 9
            })
        );
        assert_eq!(
            first.path.to_string(),
            "virtualService[reviews].http[1].match[0].uri.regex"
        );
    }

    #[test]
    fn other_istio_api_versions_are_refused_with_the_accepted_ones() {
        let bad = ISTIO.replace("networking.istio.io/v1\n", "networking.istio.io/v2\n");
        let e = sources(&bad).unwrap_err();
        assert!(e[0].message.contains("expected apiVersion networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3"), "{}", e[0]);
        assert_eq!(
            e[0].location,
            Some(LineCol {
                line: 1,
                column: 13
            })
        );
    }

    #[test]
    fn a_short_host_resolves_in_the_objects_namespace() {
        let other_ns = ISTIO.replace("  namespace: default\n", "  namespace: shop\n");
        let s = sources(&other_ns).unwrap();
        let (config, warnings) = validate_table(&s).unwrap();
        // reviews.shop does not exist: the rule binds nothing.
        assert!(
            warnings
                .iter()
                .any(|w| w.message.contains("reviews.shop.svc.cluster.local")),
            "{warnings:?}"
        );
        assert!(config.virtual_services.iter().all(|v| {
            v.hosts
                .iter()
                .all(|h| h != "reviews.default.svc.cluster.local")
        }));
    }
}
