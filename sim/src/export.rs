//! `meshsim export`: an experiment's mesh config as the Istio YAML to
//! `kubectl apply`.
//!
//! ```text
//! experiment (or run directory's experiment.toml) + --set ──plan::load──▶ point 0
//!   ──Istio arrays + ServiceEntries generated for external services──▶ yaml_out ──▶ YAML
//! ```
//!
//! What is written is what the simulation ran at its start: the objects the
//! experiment holds (inline or from `mesh = ...` files), after `--set`, plus
//! the `ServiceEntry` each `external = true` service generates. The registry
//! (Kubernetes Services and pods) comes from the topology and is not
//! written; a sweep's first point and the config before any timeline push are
//! the ones exported (both said on stderr).

use std::path::{Path, PathBuf};

use mesh_engine::config::yaml_out::{self, Extensions};
use toml::{Table, Value};

use crate::experiment::{self, ExperimentFile};
use crate::plan;

/// `meshsim export EXPERIMENT|RUN_DIR [--set PATH=VALUE]... [-o FILE]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file (TOML), or a run directory (its `experiment.toml`,
    /// the experiment as it ran).
    pub input: PathBuf,
    /// Override a field before exporting, as for `run`: `--set
    /// virtualService.shop.http.0.route.0.weight=70` (repeatable).
    #[arg(long = "set", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Write the YAML to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Keep meshsim's extensions (`meshsimStickyWeights`), each under a
    /// comment: meshsim reads the file back unchanged, Istio rejects it.
    #[arg(long)]
    pub keep_extensions: bool,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected `path=value`, e.g. load.qps=5000, found `{s}`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// The written YAML and the notes for stderr.
#[derive(Debug)]
pub struct Export {
    /// The YAML documents, with a header comment.
    pub yaml: String,
    /// What the user should know (sweep point, pushes, extensions,
    /// generated entries).
    pub notes: Vec<String>,
}

/// Runs `meshsim export`: the YAML on stdout (returned) or in `-o FILE`,
/// notes on stderr.
pub fn command(args: &Args) -> Result<String, String> {
    let extensions = if args.keep_extensions {
        Extensions::Keep
    } else {
        Extensions::Drop
    };
    let out = export(&args.input, &args.sets, extensions)?;
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    match &args.output {
        None => Ok(out.yaml),
        Some(file) => {
            std::fs::write(file, &out.yaml)
                .map_err(|e| format!("{}: cannot write: {e}", file.display()))?;
            Ok(String::new())
        }
    }
}

/// The experiment file an export reads: the file itself, or a run
/// directory's `experiment.toml`.
pub fn experiment_file(input: &Path) -> Result<PathBuf, String> {
    if !input.is_dir() {
        return Ok(input.to_owned());
    }
    let file = input.join("experiment.toml");
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!(
            "{}: a directory without experiment.toml: expected an experiment file or a run directory written by `meshsim run`",
            input.display()
        ))
    }
}

/// Exports the mesh config an experiment (or run directory) ran with.
pub fn export(
    input: &Path,
    sets: &[(String, String)],
    extensions: Extensions,
) -> Result<Export, String> {
    let file = experiment_file(input)?;
    let plan = plan::load(&file, sets, None)?;
    let job = plan
        .jobs
        .first()
        .ok_or_else(|| format!("{}: no run in this experiment", file.display()))?;
    let f = experiment::parse(&job.text, Some(&file.display().to_string()))
        .map_err(|e| e.to_string())?;
    let table: Table = toml::from_str(&job.text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut notes = Vec::new();
    if !plan.swept.is_empty() {
        notes.push(format!(
            "{} has a [sweep]: this is its first point ({}); pin the values to export with --set",
            file.display(),
            job.values
                .iter()
                .map(|(p, v)| format!("{p}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let pushes: Vec<&str> = f
        .timeline
        .iter()
        .filter(|t| t.push.is_some())
        .map(|t| t.at.text.as_str())
        .collect();
    if !pushes.is_empty() {
        notes.push(format!(
            "the timeline pushes a new mesh config at {}: this is the config before the first push",
            pushes.join(", ")
        ));
    }
    let (mesh, generated) = mesh_tables(&table, &f);
    for name in &generated {
        notes.push(format!(
            "ServiceEntry {name} is generated from the external service {name} of the topology (its pods are its endpoints)"
        ));
    }
    let written = yaml_out::write_mesh(&mesh, extensions);
    for path in &written.extensions {
        notes.push(match extensions {
            Extensions::Drop => format!(
                "{path} left out: a meshsim extension that Istio rejects (Istio picks the weighted destination per request); --keep-extensions keeps it"
            ),
            Extensions::Keep => format!(
                "{path} kept: a meshsim extension; Istio rejects this file until it is removed"
            ),
        });
    }
    let mut yaml = format!(
        "# The Istio config of experiment {}, written by `meshsim export`: kubectl apply -f this file.\n\
         # The services and pods are the experiment's topology (Kubernetes Services and Deployments): not written here.\n",
        plan.name
    );
    if written.objects == 0 {
        yaml.push_str("# (no VirtualService, DestinationRule, Gateway or ServiceEntry)\n");
        notes.push(format!("{}: no Istio object to export", file.display()));
    }
    yaml.push_str(&written.text);
    Ok(Export { yaml, notes })
}

/// The Istio arrays of an experiment's table, the ServiceEntries of its
/// external services appended (as `experiment::mesh_config` generates them);
/// and the names of those generated entries.
pub fn mesh_tables(table: &Table, f: &ExperimentFile) -> (Table, Vec<String>) {
    let mut mesh: Table = mesh_engine::config::source::ISTIO_ARRAYS
        .iter()
        .filter_map(|a| table.get(*a).map(|v| ((*a).to_owned(), v.clone())))
        .collect();
    let mut generated = Vec::new();
    let mut entries = Vec::new();
    for (si, s) in f.service.iter().enumerate() {
        if s.external != Some(true) {
            continue;
        }
        let mut se = Table::new();
        se.insert("name".to_owned(), Value::String(s.name.clone()));
        let host = s.host.clone().unwrap_or_else(|| s.name.clone());
        se.insert("hosts".to_owned(), Value::Array(vec![Value::String(host)]));
        let mut port = Table::new();
        port.insert("number".to_owned(), Value::Integer(i64::from(s.port)));
        port.insert("name".to_owned(), Value::String("http".to_owned()));
        port.insert("protocol".to_owned(), Value::String("HTTP".to_owned()));
        se.insert("ports".to_owned(), Value::Array(vec![Value::Table(port)]));
        se.insert(
            "location".to_owned(),
            Value::String("MESH_EXTERNAL".to_owned()),
        );
        se.insert("resolution".to_owned(), Value::String("STATIC".to_owned()));
        let mut endpoints = Vec::new();
        for (vi, v) in s.version.iter().enumerate() {
            for p in 0..v.pods {
                let mut labels = Table::new();
                labels.insert("app".to_owned(), Value::String(s.name.clone()));
                labels.insert("version".to_owned(), Value::String(v.name.clone()));
                let mut e = Table::new();
                e.insert(
                    "address".to_owned(),
                    Value::String(experiment::pod_ip(si, vi, p)),
                );
                e.insert("labels".to_owned(), Value::Table(labels));
                endpoints.push(Value::Table(e));
            }
        }
        se.insert("endpoints".to_owned(), Value::Array(endpoints));
        entries.push(Value::Table(se));
        generated.push(s.name.clone());
    }
    if !entries.is_empty() {
        let list = mesh
            .entry("serviceEntry".to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.extend(entries);
        }
    }
    (mesh, generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_engine::config::{self, file as mesh};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn read_back(text: &str) -> Table {
        let m = config::yaml::read(text, "out.yaml").unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let mut out = Table::new();
        for o in m.objects {
            if let Value::Array(list) = out
                .entry(o.array.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.push(Value::Table(o.table));
            }
        }
        out
    }

    /// Every shipped experiment: the exported YAML reads back as the same
    /// tables, and validates (with the topology's registry) into the very
    /// config the simulation ran on.
    #[test]
    fn every_shipped_experiment_exports_what_it_ran() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("experiments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() > 5);
        for file in files {
            let out = export(&file, &[], Extensions::Keep).unwrap();
            let plan = plan::load(&file, &[], None).unwrap();
            let job = &plan.jobs[0];
            let f = experiment::parse(&job.text, None).unwrap();
            let table: Table = toml::from_str(&job.text).unwrap();
            let (tables, _) = mesh_tables(&table, &f);
            let back = read_back(&out.yaml);
            assert_eq!(back, tables, "{}", file.display());
            // The registry from the topology, every Istio object from the YAML
            // (the generated ServiceEntries included, replacing the generated ones).
            let mut m = experiment::mesh_config(&f.service, &[], &[], &[], &[]);
            m.service_entry.clear();
            let objs: mesh::MeshConfig = Value::Table(back).try_into().unwrap();
            m.virtual_service = objs.virtual_service;
            m.destination_rule = objs.destination_rule;
            m.gateway = objs.gateway;
            m.service_entry = objs.service_entry;
            let (from_yaml, _) = config::validate(m).unwrap();
            assert_eq!(
                format!("{from_yaml:?}"),
                format!("{:?}", job.model.config),
                "{}",
                file.display()
            );
        }
    }

    #[test]
    fn an_external_service_is_exported_as_its_generated_service_entry() {
        let out = export(
            &root().join("experiments/traffic-suspend.toml"),
            &[],
            Extensions::Drop,
        )
        .unwrap();
        assert!(out.yaml.contains("kind: ServiceEntry"), "{}", out.yaml);
        assert!(out.yaml.contains("location: MESH_EXTERNAL"), "{}", out.yaml);
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("is generated from the external service")),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn the_sticky_extension_is_left_out_by_default_with_a_note() {
        let file = root().join("experiments/sticky-sessions-extension.toml");
        let out = export(&file, &[], Extensions::Drop).unwrap();
        assert!(!out.yaml.contains("meshsimStickyWeights:"), "{}", out.yaml);
        assert!(out.yaml.contains("# meshsimStickyWeights left out"));
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("meshsimStickyWeights left out")),
            "{:?}",
            out.notes
        );
    }
}
