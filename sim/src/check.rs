//! `meshsim check`: experiments checked as experiments, mesh configs (TOML,
//! Istio YAML, directories) as one merged config, every finding with its
//! code, severity, file:line:column and fix; text for people, JSON for CI.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mesh_engine::config::analyze::{self, Severity};
use mesh_engine::config::{ConfigError, Warning, source};

/// What `check` was asked.
pub(crate) struct Args<'a> {
    /// Experiments, mesh files and directories.
    pub(crate) files: &'a [PathBuf],
    /// `--set` overrides (experiments only).
    pub(crate) sets: &'a [(String, String)],
    /// `--output json`.
    pub(crate) json: bool,
    /// `--fail-on`: the lowest severity that fails the check.
    pub(crate) fail_on: Severity,
}

/// One finding of the report.
struct Finding {
    severity: Severity,
    /// `None` for notes (objects skipped), which are not findings proper.
    code: Option<&'static str>,
    problem: ConfigError,
    note: bool,
}

/// What a file is, for `check`.
enum Kind {
    Experiment,
    /// A whole mesh config in TOML, checked on its own (as `meshsim route` reads it).
    MeshToml,
    /// Istio YAML or a directory: merged with the others of its kind.
    Manifests,
}

fn kind(path: &Path) -> Kind {
    if path.is_dir() || source::is_yaml(path) {
        return Kind::Manifests;
    }
    let mesh_only = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .is_some_and(|t| {
            !t.is_empty() && t.keys().all(|k| source::MESH_ARRAYS.contains(&k.as_str()))
        });
    if mesh_only {
        Kind::MeshToml
    } else {
        Kind::Experiment
    }
}

/// Runs the check; `Ok(stdout)` or `Err((stdout, stderr))` for exit code 2.
pub(crate) fn check(args: &Args<'_>) -> Result<String, (String, String)> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut summaries = String::new();
    let mut failures: Vec<(String, Vec<ConfigError>)> = Vec::new();
    let mut manifests: Vec<PathBuf> = Vec::new();
    let warn = |findings: &mut Vec<Finding>, ws: &[Warning]| {
        findings.extend(ws.iter().map(|w| Finding {
            severity: analyze::severity(w),
            code: w.code,
            problem: w.clone(),
            note: false,
        }));
    };
    // With any Istio YAML, every mesh file (TOML too: the registry, the
    // listeners) joins one merged config; TOML mesh files alone are each
    // checked on their own.
    let any_yaml = args
        .files
        .iter()
        .any(|p| matches!(kind(p), Kind::Manifests));
    for path in args.files {
        let shown = path.display().to_string();
        match kind(path) {
            Kind::Manifests | Kind::MeshToml if !args.sets.is_empty() => failures.push((
                format!("{shown}: --set applies to experiment files only"),
                Vec::new(),
            )),
            Kind::Manifests => manifests.push(path.clone()),
            Kind::MeshToml if any_yaml => manifests.push(path.clone()),
            Kind::Experiment => match experiment(path, args.sets) {
                Ok((line, plan)) => {
                    warn(&mut findings, &plan.warnings);
                    notes(&mut findings, &plan.notes);
                    summaries.push_str(&line);
                }
                Err(msg) => failures.push((msg, Vec::new())),
            },
            Kind::MeshToml => match source::load(std::slice::from_ref(path)) {
                Ok((cfg, ws, _)) => {
                    warn(&mut findings, &ws);
                    summaries.push_str(&summary(&shown, &cfg, &ws));
                }
                Err(e) => failures.push((errors_text(&shown, &e.0), e.0)),
            },
        }
    }
    if !manifests.is_empty() {
        let shown = manifests
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        match source::read(&manifests, &source::MESH_ARRAYS) {
            Err(e) => failures.push((errors_text(&shown, &e.0), e.0)),
            Ok(sources) => {
                notes(&mut findings, &sources.notes);
                warn(&mut findings, &sources.warnings);
                match source::validate_table(&sources) {
                    Ok((cfg, ws)) => {
                        warn(&mut findings, &ws);
                        let mut all = sources.warnings.clone();
                        all.extend(ws);
                        summaries.push_str(&summary(&shown, &cfg, &all));
                    }
                    Err(e) => failures.push((errors_text(&shown, &e.0), e.0)),
                }
            }
        }
    }
    let failing = findings
        .iter()
        .filter(|f| !f.note && f.severity >= args.fail_on)
        .count();
    let out = if args.json {
        json(&findings, &failures)
    } else {
        let mut out = String::new();
        for f in &findings {
            let label = if f.note {
                "note".to_owned()
            } else {
                label(&f.problem)
            };
            let _ = writeln!(out, "{label}: {}", f.problem);
        }
        out.push_str(&summaries);
        out
    };
    if failures.is_empty() && failing == 0 {
        return Ok(out);
    }
    let mut err = failures
        .iter()
        .map(|f| f.0.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if failing > 0 {
        if !err.is_empty() {
            err.push('\n');
        }
        let _ = write!(
            err,
            "{failing} finding{} at or above --fail-on {}",
            if failing == 1 { "" } else { "s" },
            args.fail_on
        );
    }
    Err((out, err))
}

/// `warning[MSH0001]`, `info[MSH0002]`, or `warning` for a code-less warning.
pub(crate) fn label(w: &Warning) -> String {
    match w.code {
        Some(c) => format!("{}[{c}]", analyze::severity(w)),
        None => "warning".to_owned(),
    }
}

fn notes(findings: &mut Vec<Finding>, notes: &[ConfigError]) {
    findings.extend(notes.iter().map(|n| Finding {
        severity: Severity::Info,
        code: None,
        problem: n.clone(),
        note: true,
    }));
}

fn experiment(
    path: &Path,
    sets: &[(String, String)],
) -> Result<(String, meshsim::plan::Plan), String> {
    let shown = path.display().to_string();
    if std::fs::read_to_string(path).is_ok_and(|t| t.trim().is_empty()) {
        return Err(format!(
            "{shown}: the file is empty: expected an experiment (name, duration, [[service]], [[client]], [load]; see docs/experiment-format.md) or a mesh config ([[virtualService]], [[destinationRule]], …; see docs/config.md)"
        ));
    }
    let plan = meshsim::plan::load(path, sets, None)?;
    let points = plan.jobs.last().map_or(0, |j| j.point + 1);
    let m = &plan.jobs[0].model;
    let mut line = format!(
        "{shown}: ok: experiment {}, {} simulated, {} run(s) ({points} sweep point(s) × {} seed(s))\n",
        plan.name,
        m.duration_text(),
        plan.jobs.len(),
        plan.jobs.len() / points.max(1)
    );
    // An experiment with a [tune] table: checked as `meshsim tune` reads it.
    if toml::from_str::<toml::Table>(&plan.text).is_ok_and(|t| t.contains_key("tune")) {
        line.push_str(&meshsim::tune::check(path, sets)?);
    }
    Ok((line, plan))
}

fn summary(shown: &str, cfg: &mesh_engine::config::Config, warnings: &[Warning]) -> String {
    let endpoints: usize = cfg.services.iter().map(|s| s.endpoints.len()).sum();
    format!(
        "{shown}: ok: {} services, {} endpoints, {} clusters, {} VirtualServices, {} DestinationRules, {} Gateways, {} ServiceEntries, {} warning{}\n",
        cfg.services.len(),
        endpoints,
        cfg.clusters.len(),
        cfg.virtual_services.len(),
        cfg.source.destination_rule.len(),
        cfg.gateways.len(),
        cfg.source.service_entry.len(),
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    )
}

/// Errors as text, with the count and what to do.
pub(crate) fn errors_text(shown: &str, errors: &[ConfigError]) -> String {
    let n = errors.len();
    let mut s = String::new();
    for e in errors {
        let _ = writeln!(s, "{e}");
    }
    let _ = write!(
        s,
        "{shown}: {n} error{} found; fix {} and run `meshsim check {shown}` again",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" }
    );
    s
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

/// `{"findings": [...], "errors": [...], "counts": {...}}`, one finding a line.
fn json(findings: &[Finding], failures: &[(String, Vec<ConfigError>)]) -> String {
    let errors: Vec<Finding> = failures
        .iter()
        .flat_map(|f| &f.1)
        .map(|e| Finding {
            severity: Severity::Error,
            code: e.code,
            problem: e.clone(),
            note: false,
        })
        .collect();
    let mut out = String::from("{\"findings\": [");
    for (i, f) in errors.iter().chain(findings).enumerate() {
        let p = &f.problem;
        let (message, fix) = match p.message.split_once("; fix: ") {
            Some((m, x)) => (m, Some(x)),
            None => (p.message.as_str(), None),
        };
        let object = p
            .path
            .0
            .get(..2)
            .map(|s| mesh_engine::config::FieldPath(s.to_vec()).to_string());
        let _ = write!(
            out,
            "{}\n  {{\"severity\": {}, \"code\": {}, \"object\": {}, \"path\": {}, \"file\": {}, \"line\": {}, \"column\": {}, \"message\": {}, \"fix\": {}}}",
            if i == 0 { "" } else { "," },
            json_str(&if f.note {
                "note".to_owned()
            } else {
                f.severity.to_string()
            }),
            opt_str(f.code),
            opt_str(object.as_deref()),
            json_str(&p.path.to_string()),
            opt_str(p.file.as_deref()),
            p.location
                .map_or_else(|| "null".to_owned(), |l| l.line.to_string()),
            p.location
                .map_or_else(|| "null".to_owned(), |l| l.column.to_string()),
            json_str(message),
            opt_str(fix),
        );
    }
    // Problems that are not located in a config (an experiment's), as text.
    out.push_str("\n], \"errors\": [");
    for (i, (e, _)) in failures.iter().filter(|f| f.1.is_empty()).enumerate() {
        let _ = write!(out, "{}\n  {}", if i == 0 { "" } else { "," }, json_str(e));
    }
    let count = |s: Severity| {
        findings
            .iter()
            .filter(|f| !f.note && f.severity == s)
            .count()
    };
    let _ = writeln!(
        out,
        "\n], \"counts\": {{\"error\": {}, \"warning\": {}, \"info\": {}, \"note\": {}}}}}",
        errors.len() + failures.iter().filter(|f| f.1.is_empty()).count() + count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
        findings.iter().filter(|f| f.note).count()
    );
    out
}
