//! Reading `meshproxy`'s config: the mesh TOML the simulator reads, whose
//! `[[listener]]` tables say where this proxy listens and which proxy it is.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mesh_engine::ProxySpec;
use mesh_engine::config::{self, Config, ConfigErrors, Warning, source};

/// A config file read and checked.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The checked mesh config.
    pub mesh: Arc<Config>,
    /// The file's text (for `/config_dump`).
    pub text: String,
    /// Things Istio accepts that are probably mistakes.
    pub warnings: Vec<Warning>,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerSpec>,
}

/// One listener: an address and the proxy behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Where to listen.
    pub address: SocketAddr,
    /// Which proxy it is (sidecar or gateway).
    pub proxy: ProxySpec,
}

impl ListenerSpec {
    /// `gateway ns/name` or `sidecar ns`, for logs.
    pub fn role(&self) -> String {
        match &self.proxy.gateway {
            Some(g) => format!("gateway {g}"),
            None => format!("sidecar {}", self.proxy.namespace),
        }
    }
}

/// Why a config file was not accepted.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not a valid mesh config.
    Invalid(ConfigErrors),
    /// The file has no `[[listener]]`.
    NoListener(PathBuf),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(p, e) => write!(f, "{}: cannot read the config: {e}", p.display()),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::NoListener(p) => write!(
                f,
                "{}: listener: expected at least one [[listener]] with an address, e.g.\n\
                 [[listener]]\naddress = \"127.0.0.1:15001\"",
                p.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, parses and checks the config: one TOML mesh file, or several
/// files and directories of TOML and Istio YAML merged (the listeners and
/// the registry in TOML, the Istio objects in either syntax).
pub fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    if let [path] = paths
        && !path.is_dir()
        && !source::is_yaml(path)
    {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read(path.clone(), e))?;
        return parse(&text, path);
    }
    let (mesh, warnings, sources) = source::load(paths).map_err(LoadError::Invalid)?;
    // `/config_dump` shows every file as it was read, each under its name.
    let mut text = String::new();
    for (name, body) in &sources.texts {
        text.push_str(&format!("# ---- {name} ----\n{body}\n"));
    }
    let first = paths.first().cloned().unwrap_or_default();
    with_listeners(mesh, warnings, text, &first)
}

/// What the config's files look like now: each path and each file of its
/// directories with its modification time and length. Any change (a file
/// edited, added, removed, or an older file copied over one) changes it.
pub fn modified(paths: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).ok();
        (
            p.to_owned(),
            m.as_ref().and_then(|m| m.modified().ok()),
            m.map_or(0, |m| m.len()),
        )
    };
    paths
        .iter()
        .flat_map(|p| {
            let mut all = vec![stamp(p)];
            if p.is_dir()
                && let Ok(files) = source::expand(p)
            {
                all.extend(files.iter().map(|f| stamp(f)));
            }
            all
        })
        .collect()
}

/// Parses and checks config text read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let (mesh, warnings) = config::from_toml(text, Some(&name)).map_err(LoadError::Invalid)?;
    with_listeners(mesh, warnings, text.to_owned(), path)
}

/// The checked config with its listeners (at least one).
fn with_listeners(
    mesh: Config,
    warnings: Vec<Warning>,
    text: String,
    path: &Path,
) -> Result<Loaded, LoadError> {
    // The engine checked every listener (address syntax, gateway exists).
    let listeners: Vec<ListenerSpec> = mesh
        .source
        .listener
        .iter()
        .filter_map(|l| {
            let address = l.address.parse().ok()?;
            let namespace = l.namespace.clone().unwrap_or_else(|| "default".to_owned());
            let proxy = match &l.gateway {
                Some(g) => match g.split_once('/') {
                    Some((ns, n)) => ProxySpec::gateway(ns, n),
                    None => ProxySpec::gateway(&namespace, g),
                },
                None => ProxySpec {
                    namespace,
                    labels: l.labels.clone(),
                    gateway: None,
                },
            };
            Some(ListenerSpec { address, proxy })
        })
        .collect();
    if listeners.is_empty() {
        return Err(LoadError::NoListener(path.to_owned()));
    }
    Ok(Loaded {
        mesh: Arc::new(mesh),
        text,
        warnings,
        listeners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = r#"
[[service]]
name = "echo"
port = 80
endpoints = [{ address = "127.0.0.1:9", labels = { version = "v1" } }]

[[gateway]]
name = "ingress"
servers = [{ port = { number = 80 }, hosts = ["*"] }]
"#;

    #[test]
    fn listeners_become_sidecars_or_gateways() {
        let text = format!(
            "{MESH}\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[listener]]\naddress = \"127.0.0.1:8080\"\ngateway = \"ingress\"\n"
        );
        let l = parse(&text, Path::new("p.toml")).unwrap();
        assert_eq!(l.listeners.len(), 2);
        assert_eq!(l.listeners[0].proxy.gateway, None);
        assert_eq!(
            l.listeners[1].proxy.gateway.as_deref(),
            Some("default/ingress")
        );
        assert_eq!(l.listeners[1].role(), "gateway default/ingress");
    }

    #[test]
    fn a_config_without_listener_is_refused_with_what_to_add() {
        let e = parse(MESH, Path::new("p.toml")).unwrap_err().to_string();
        assert!(
            e.starts_with("p.toml: listener: expected at least one [[listener]]"),
            "{e}"
        );
    }

    #[test]
    fn engine_errors_name_file_line_and_field() {
        let text = format!("{MESH}\n[[listener]]\naddress = \"nowhere\"\n");
        let e = parse(&text, Path::new("p.toml")).unwrap_err().to_string();
        assert!(
            e.contains("p.toml:") && e.contains("listener[0].address"),
            "{e}"
        );
    }
}
