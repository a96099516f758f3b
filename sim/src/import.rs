//! `meshsim import`: an experiment skeleton from what a cluster runs.
//!
//! ```text
//! kubectl get svc,deploy,statefulset,vs,dr,gw,se -A -o yaml
//!   ──config::source::read──▶ Istio objects (kept in the user's files)
//!                             + other Kubernetes objects (Services, workloads)
//!   ──Services × workloads whose pod labels match their selector──▶ [[service]]s
//!   ──plan::load_text (the experiment is checked before it is written)──▶ TOML
//! ```
//!
//! Each Kubernetes Service becomes a `[[service]]` (its first port); its
//! versions are the `version` labels of the pods of the Deployments and
//! StatefulSets it selects, `pods` their `spec.replicas`. Latencies are
//! placeholders to edit, the load goes to a modest rate, and the Istio
//! objects stay in the user's files, referenced by `mesh = [...]`, so the
//! experiment simulates exactly what the cluster holds. Everything guessed
//! or left out is said in a `#` comment next to it.
//!
//! The simulated topology has one namespace, `default` (see
//! `experiment.rs`): a Service of another namespace is imported into it,
//! with a comment and a note, since hosts and Istio objects written for that
//! namespace do not reach it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use mesh_engine::config::LineCol;
use mesh_engine::config::source::{self, ISTIO_ARRAYS};
use mesh_engine::config::yaml::{Node, Value as Y};
use toml::Value;

use crate::plan;

/// `meshsim import DUMP... [-o FILE]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output of `kubectl get svc,deploy,statefulset,vs,dr,gw,se -A -o yaml`
    /// (a `kind: List`, multi-document YAML, JSON), as `.yaml`, `.yml` or
    /// `.json` files or directories of them.
    #[arg(required = true)]
    pub dumps: Vec<PathBuf>,
    /// Write the experiment to this file instead of stdout (the `mesh`
    /// paths are relative to its directory).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// The placeholder latency of every imported version.
const LATENCY: &str = r#"{ distribution = "lognormal", median = "10ms", sigma = 0.5 }"#;
/// The placeholder rate of the load.
const QPS: u32 = 100;
/// Namespaces whose Services are the platform's, not the application's.
const SYSTEM_NAMESPACES: [&str; 2] = ["kube-system", "istio-system"];

/// Runs `meshsim import`: the experiment on stdout (returned) or in `-o
/// FILE`, notes on stderr.
pub fn command(args: &Args) -> Result<String, String> {
    let out = import(&args.dumps, args.output.as_deref())?;
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    match &args.output {
        None => Ok(out.toml),
        Some(file) => {
            std::fs::write(file, &out.toml)
                .map_err(|e| format!("{}: cannot write: {e}", file.display()))?;
            Ok(format!(
                "{}: {} service(s); run it with `meshsim run {0}`\n",
                file.display(),
                out.services
            ))
        }
    }
}

/// An imported experiment.
#[derive(Debug)]
pub struct Imported {
    /// The experiment, TOML with comments.
    pub toml: String,
    /// What the user should know (skipped objects, namespaces, guesses).
    pub notes: Vec<String>,
    /// How many `[[service]]`s it has.
    pub services: usize,
}

/// A Kubernetes object's place, for messages: `file:line:column`.
fn place(file: &str, at: LineCol) -> String {
    format!("{file}:{}:{}", at.line, at.column)
}

fn text_at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a str> {
    node_at(node, path).and_then(Node::as_str)
}

fn node_at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(node, |n, k| n.get(k))
}

/// A mapping of string values (labels, selectors); other values are skipped.
fn string_map(node: Option<&Node>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Node {
        value: Y::Map(entries),
        ..
    }) = node
    {
        for e in entries {
            let v = match &e.value.value {
                Y::Str(s) => s.clone(),
                Y::Int(i) => i.to_string(),
                Y::Bool(b) => b.to_string(),
                Y::Float(f) => f.to_string(),
                _ => continue,
            };
            out.insert(e.key.clone(), v);
        }
    }
    out
}

/// A Kubernetes Service.
struct Service {
    file: String,
    at: LineCol,
    name: String,
    namespace: String,
    selector: BTreeMap<String, String>,
    port: Option<i64>,
}

/// A Deployment or StatefulSet.
struct Workload {
    kind: String,
    name: String,
    namespace: String,
    replicas: i64,
    labels: BTreeMap<String, String>,
}

/// One `[[service]]` to write.
struct Imports {
    name: String,
    port: i64,
    comments: Vec<String>,
    /// version → (pods, workloads, comments)
    versions: Vec<(String, i64, Vec<String>)>,
}

/// Imports the dumps; `output` is where the experiment will be written
/// (`mesh` paths are relative to its directory; stdout: the current one).
pub fn import(dumps: &[PathBuf], output: Option<&Path>) -> Result<Imported, String> {
    // A dump given by name is read as YAML only: a `.txt` would be read as
    // a TOML mesh file and fail with a confusing message.
    if let Some(d) = dumps
        .iter()
        .find(|d| !d.is_dir() && d.exists() && !source::is_yaml(d))
    {
        return Err(format!(
            "{}: expected a .yaml, .yml or .json file (the output of `kubectl get ... -o yaml`): rename it",
            d.display()
        ));
    }
    let sources = source::read(dumps, &ISTIO_ARRAYS).map_err(|e| {
        let n = e.0.len();
        format!(
            "{e}\n{n} error{} in {}: fix {} and run `meshsim import` again",
            if n == 1 { "" } else { "s" },
            show_list(dumps),
            if n == 1 { "it" } else { "them" }
        )
    })?;
    let mut notes = Vec::new();
    let mut services = Vec::new();
    let mut workloads = Vec::new();
    for (file, node) in &sources.others {
        let kind = text_at(node, &["kind"]).unwrap_or_default();
        let name = text_at(node, &["metadata", "name"]).unwrap_or_default();
        let namespace = text_at(node, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_owned();
        match kind {
            "Service" => {
                let port = match node_at(node, &["spec", "ports"]).map(|n| &n.value) {
                    Some(Y::Seq(ports)) => match ports.first().and_then(|p| p.get("port")) {
                        Some(Node {
                            value: Y::Int(p), ..
                        }) => Some(*p),
                        Some(other) => {
                            return Err(format!(
                                "{}: Service {name}: spec.ports[0].port: expected a port number, found {}",
                                place(file, other.at),
                                other.type_name()
                            ));
                        }
                        None => None,
                    },
                    _ => None,
                };
                services.push(Service {
                    file: file.clone(),
                    at: node.at,
                    name: name.to_owned(),
                    namespace,
                    selector: string_map(node_at(node, &["spec", "selector"])),
                    port,
                });
            }
            "Deployment" | "StatefulSet" => {
                let replicas = match node_at(node, &["spec", "replicas"]) {
                    None | Some(Node { value: Y::Null, .. }) => 1,
                    Some(Node {
                        value: Y::Int(n), ..
                    }) => *n,
                    Some(other) => {
                        return Err(format!(
                            "{}: {kind} {name}: spec.replicas: expected a number, found {}",
                            place(file, other.at),
                            other.type_name()
                        ));
                    }
                };
                let mut labels =
                    string_map(node_at(node, &["spec", "template", "metadata", "labels"]));
                if labels.is_empty() {
                    labels = string_map(node_at(node, &["spec", "selector", "matchLabels"]));
                }
                workloads.push(Workload {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    namespace,
                    replicas,
                    labels,
                });
            }
            _ => {}
        }
    }
    if services.is_empty() {
        return Err(format!(
            "{}: no Kubernetes Service (kind: Service) found: expected the output of `kubectl get svc,deploy,statefulset,vs,dr,gw,se -A -o yaml`",
            show_list(dumps)
        ));
    }

    let mut skipped = Vec::new();
    let mut imports: Vec<Imports> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in &services {
        let what = format!(
            "Service {}/{} ({})",
            s.namespace,
            s.name,
            place(&s.file, s.at)
        );
        if SYSTEM_NAMESPACES.contains(&s.namespace.as_str()) {
            skipped.push(format!(
                "{what}: the platform's ({}), not the application's",
                s.namespace
            ));
            continue;
        }
        if s.namespace == "default" && s.name == "kubernetes" {
            skipped.push(format!("{what}: the Kubernetes API server"));
            continue;
        }
        let Some(port) = s.port.filter(|p| (1..=65535).contains(p)) else {
            skipped.push(format!("{what}: no port in spec.ports"));
            continue;
        };
        if let Some(first) = seen.get(&s.name) {
            skipped.push(format!(
                "{what}: a service named {} is already imported from namespace {first}; the simulated topology has one namespace",
                s.name
            ));
            continue;
        }
        seen.insert(s.name.clone(), s.namespace.clone());
        let mut comments = vec![format!(
            "Service {} in namespace {}, port {port}{}.",
            s.name,
            s.namespace,
            if s.selector.is_empty() {
                String::new()
            } else {
                format!(
                    ", selector {}",
                    s.selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        )];
        if s.namespace != "default" {
            comments.push(format!(
                "LIMITATION: simulated in namespace default (meshsim's topology has one namespace): its host is {}.default.svc.cluster.local, not {}.{}.svc.cluster.local, and Istio objects of namespace {} with short hosts do not reach it.",
                s.name, s.name, s.namespace, s.namespace
            ));
            notes.push(format!(
                "{what}: simulated in namespace default (the topology has one namespace): objects and hosts written for namespace {} do not reach it",
                s.namespace
            ));
        }
        let mut versions: Vec<(String, i64, Vec<String>)> = Vec::new();
        if !s.selector.is_empty() {
            for w in workloads.iter().filter(|w| {
                w.namespace == s.namespace
                    && s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
            }) {
                let version = w.labels.get("version").filter(|v| !v.is_empty()).cloned();
                let mut why = format!("{} {}: {} replica(s)", w.kind, w.name, w.replicas);
                if version.is_none() {
                    why.push_str(", no `version` label: named v1");
                }
                let pods = if w.replicas < 1 {
                    why.push_str(
                        " (scaled down: given 1 pod here; remove the version if it serves nothing)",
                    );
                    1
                } else {
                    w.replicas
                };
                let version = version.unwrap_or_else(|| "v1".to_owned());
                match versions.iter_mut().find(|(v, ..)| *v == version) {
                    Some((_, n, c)) => {
                        *n += pods;
                        c.push(why);
                    }
                    None => versions.push((version, pods, vec![why])),
                }
            }
        }
        if versions.is_empty() {
            let why = if s.selector.is_empty() {
                "no selector (its endpoints are managed elsewhere)"
            } else {
                "no Deployment or StatefulSet in the dump has pods its selector matches"
            };
            comments.push(format!("{why}: given 1 pod, version v1; edit `pods`."));
            notes.push(format!("{what}: {why}: given 1 pod, version v1"));
            versions.push(("v1".to_owned(), 1, Vec::new()));
        }
        imports.push(Imports {
            name: s.name.clone(),
            port,
            comments,
            versions,
        });
    }
    for s in &skipped {
        notes.push(format!("skipped {s}"));
    }
    if imports.is_empty() {
        return Err(format!(
            "{}: no application Service to import; skipped:\n  {}",
            show_list(dumps),
            skipped.join("\n  ")
        ));
    }

    // The Istio objects, kept in the user's files.
    let istio_count: Vec<String> = ISTIO_ARRAYS
        .iter()
        .zip([
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
        ])
        .filter_map(|(a, kind)| {
            let n = sources.table.get(*a).and_then(Value::as_array)?.len();
            (n > 0).then(|| format!("{n} {kind}{}", if n == 1 { "" } else { "s" }))
        })
        .collect();
    let mut other_ns = BTreeMap::<String, Vec<String>>::new();
    let mut routed = Vec::new();
    for a in ISTIO_ARRAYS {
        for o in sources
            .table
            .get(a)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
            if let Some(ns) = o.get("namespace").and_then(Value::as_str)
                && ns != "default"
            {
                other_ns
                    .entry(ns.to_owned())
                    .or_default()
                    .push(format!("{a} {name}"));
            }
            if a == "virtualService" {
                for h in o
                    .get("hosts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(h) = h.as_str() {
                        routed.push(h.to_owned());
                    }
                }
            }
        }
    }
    for (ns, objs) in &other_ns {
        notes.push(format!(
            "{} in namespace {ns}: their short hosts mean <name>.{ns}.svc.cluster.local, which the simulated topology (namespace default) does not have",
            objs.join(", ")
        ));
    }

    // Paths relative to where the experiment will be.
    let out_dir = match output {
        Some(file) => {
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
            let parent = parent.unwrap_or_else(|| Path::new("."));
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
            parent
                .canonicalize()
                .map_err(|e| format!("{}: {e}", parent.display()))?
        }
        None => std::env::current_dir()
            .and_then(|d| d.canonicalize())
            .map_err(|e| format!("the current directory: {e}"))?,
    };
    let mut mesh_paths = Vec::new();
    for d in dumps {
        let abs = d
            .canonicalize()
            .map_err(|e| format!("{}: {e}", d.display()))?;
        if d.is_dir() && abs == out_dir {
            return Err(format!(
                "{}: the experiment would be written into the directory it reads as `mesh` (every .toml there is read as a mesh file): write it elsewhere with -o",
                d.display()
            ));
        }
        mesh_paths.push(relative(&abs, &out_dir));
    }

    // Which service the load hits: the first one a VirtualService routes.
    let routed_one = imports.iter().find(|i| {
        routed.iter().any(|h| {
            h == &i.name
                || h.strip_prefix(&i.name)
                    .is_some_and(|rest| rest.starts_with(".default"))
        })
    });
    let routed_target = routed_one.is_some();
    let target = routed_one.unwrap_or(&imports[0]);

    let name = output
        .and_then(|f| f.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("imported")
        .to_owned();
    let t = |s: &str| Value::String(s.to_owned()).to_string();

    let mut o = String::new();
    let _ = writeln!(
        o,
        "# An experiment skeleton written by `meshsim import` from:"
    );
    for d in dumps {
        let _ = writeln!(o, "#   {}", d.display());
    }
    o.push_str(
        "#\n\
         # What to edit before trusting the numbers:\n\
         # - each version's `latency` (a placeholder: lognormal, median 10ms) and\n\
         #   `errorRate`, from what you measure (e.g. istio_request_duration_milliseconds);\n\
         # - the calls each service makes (`[[service.call]]`): none are imported;\n\
         # - `[load]`: which service it hits (`host`), its rate (`qps`), the client;\n\
         # - `[[timeline]]`: the failure to simulate (a pod that fails, slows or crashes).\n\
         # Fields: docs/experiment-format.md. Run it: meshsim run <this file>\n",
    );
    let _ = writeln!(o, "name = {}", t(&name));
    let _ = writeln!(o, "duration = \"60s\"");
    let _ = writeln!(o, "seed = 1");
    o.push('\n');
    if !istio_count.is_empty() {
        let what = format!(
            "The Istio objects ({}) are read from your files as they are; the other kinds in them are skipped. Paths are relative to this file.",
            istio_count.join(", ")
        );
        for line in wrap(&what, 76) {
            let _ = writeln!(o, "# {line}");
        }
        for (ns, objs) in &other_ns {
            let what = format!(
                "LIMITATION: {} in namespace {ns}: their short hosts resolve in {ns}, but every simulated service is in namespace default: they will not apply to it.",
                objs.join(", ")
            );
            for line in wrap(&what, 76) {
                let _ = writeln!(o, "# {line}");
            }
        }
        let list: Vec<String> = mesh_paths.iter().map(|p| t(&p.to_string_lossy())).collect();
        let _ = writeln!(o, "mesh = [{}]", list.join(", "));
    } else {
        let _ = writeln!(
            o,
            "# No VirtualService, DestinationRule, Gateway or ServiceEntry in the dump:\n\
             # the mesh has Istio's defaults. Add `mesh = [\"your-istio.yaml\"]` to use yours."
        );
    }
    if !skipped.is_empty() {
        o.push('\n');
        let _ = writeln!(o, "# Not imported:");
        for s in &skipped {
            let _ = writeln!(o, "# - {s}");
        }
    }
    for i in &imports {
        o.push('\n');
        for c in &i.comments {
            for line in wrap(c, 76) {
                let _ = writeln!(o, "# {line}");
            }
        }
        let _ = writeln!(o, "[[service]]");
        let _ = writeln!(o, "name = {}", t(&i.name));
        let _ = writeln!(o, "port = {}", i.port);
        for (v, pods, why) in &i.versions {
            let _ = writeln!(o, "[[service.version]]");
            for w in why {
                let _ = writeln!(o, "# {w}");
            }
            let _ = writeln!(o, "name = {}", t(v));
            let _ = writeln!(o, "pods = {pods}");
            let _ = writeln!(o, "latency = {LATENCY}  # placeholder: edit");
        }
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "# The calling workload: one sidecar in namespace default sending the load."
    );
    let _ = writeln!(o, "[[client]]");
    let _ = writeln!(o, "name = \"fortio\"");
    o.push('\n');
    let what = format!(
        "A modest open-loop load on {}: edit `host` (a service, or a gateway host with a `gateway` client), `qps`, `path`, `headers`.",
        if routed_target {
            "the first service a VirtualService routes"
        } else {
            "the first service"
        }
    );
    for line in wrap(&what, 76) {
        let _ = writeln!(o, "# {line}");
    }
    let _ = writeln!(o, "[load]");
    let _ = writeln!(o, "client = \"fortio\"");
    let _ = writeln!(o, "host = {}", t(&target.name));
    let _ = writeln!(o, "qps = {QPS}");
    o.push('\n');
    let example_pod = format!(
        "{}-{}-0",
        target.name,
        target.versions.first().map_or("v1", |v| v.0.as_str())
    );
    let _ = writeln!(
        o,
        "# A failure to simulate: uncomment and edit (pods are <service>-<version>-<index>).\n\
         # [[timeline]]\n\
         # at = \"20s\"\n\
         # pod = {}\n\
         # fail = {{ status = 503 }}        # or slow = {{ factor = 5 }}, crash = true",
        t(&example_pod)
    );

    // Checked as `meshsim run` will read it, before anything is written.
    let at = output.map_or_else(|| out_dir.join(format!("{name}.toml")), Path::to_path_buf);
    plan::load_text(&o, &at, &[], None).map_err(|e| {
        format!("{e}\nthe experiment imported from {} does not check: the errors above are in your Istio objects (or a meshsim limitation); fix them and import again", show_list(dumps))
    })?;
    Ok(Imported {
        toml: o,
        notes,
        services: imports.len(),
    })
}

fn show_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `target` relative to the directory `base` (both absolute, canonical).
fn relative(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<Component<'_>> = target.components().collect();
    let b: Vec<Component<'_>> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Sharing only the root: the absolute path says more than `../../..`.
    if common <= 1 {
        return target.to_owned();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Splits a sentence into lines of at most `width` characters (words kept whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_directory() {
        assert_eq!(
            relative(Path::new("/a/b/c.yaml"), Path::new("/a/d")),
            PathBuf::from("../b/c.yaml")
        );
        assert_eq!(
            relative(Path::new("/x/c.yaml"), Path::new("/a/b")),
            PathBuf::from("/x/c.yaml")
        );
        assert_eq!(
            relative(Path::new("/a/b/c.yaml"), Path::new("/a/b")),
            PathBuf::from("c.yaml")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn long_comments_wrap_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
    }
}
