//! Experiment files: everything needed to reproduce a run — the topology
//! (services, versions, pods and how they behave), the mesh config (Istio
//! objects), the load, the timeline, the duration and the seed.
//!
//! ```toml
//! name = "one-bad-pod"
//! duration = "300s"
//! seed = 1
//! window = "1s"
//!
//! [[service]]                 # the topology: services and their pods
//! name = "backend"
//! port = 8080
//! [[service.version]]
//! name = "v1"
//! pods = 10
//! latency = { distribution = "lognormal", median = "20ms", sigma = 0.5 }
//!
//! [[client]]                  # the calling proxies (sidecars or a gateway)
//! name = "fortio"
//!
//! [load]                      # fortio's vocabulary
//! client = "fortio"
//! host = "backend"
//! qps = 1000
//!
//! [[timeline]]
//! at = "60s"
//! pod = "backend-v1-3"
//! fail = { status = 503 }
//!
//! [[destinationRule]]         # the mesh config, as in a mesh file
//! name = "backend"
//! host = "backend"
//! ```
//!
//! The mesh objects (`virtualService`, `destinationRule`, `gateway`,
//! `serviceEntry`) sit at the top level with Istio's names, exactly as in a
//! mesh file; the registry (`[[service]]` endpoints) is generated from the
//! topology, one endpoint per pod with labels `app` and `version`, and an
//! `external = true` service becomes a `ServiceEntry` on its `host`.
//!
//! A service (or one of its versions) may declare the calls its pods make
//! for each request they serve — the call graph:
//!
//! ```toml
//! [[service]]
//! name = "reviews"
//! port = 9080
//! callMode = "sequential"     # or "parallel"
//! [[service.call]]
//! host = "ratings"
//! timeout = "500ms"           # the application's own timeout
//! propagate = ["end-user"]    # inbound headers copied onto the call
//! onError = "fail"            # or "ignore" (a fallback)
//! ```
//!
//! Every field is documented in `docs/experiment-format.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_engine::config::{self, ConfigError, FieldPath, IstioDuration, file as mesh};
use serde::Deserialize;

/// An experiment file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExperimentFile {
    /// Name, used in outputs.
    pub name: String,
    /// Simulated time.
    pub duration: IstioDuration,
    /// Seed of the run.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Metrics window (1s when absent).
    #[serde(default)]
    pub window: Option<IstioDuration>,
    /// Guard against runaway runs: fail loudly beyond this many events.
    #[serde(default)]
    pub max_events: Option<u64>,
    /// Replicas: run seeds `seed`, `seed + 1`, … (1 when absent).
    #[serde(default)]
    pub seeds: Option<u32>,
    /// `meshsim tune`'s search space, scenarios, constraints and preference
    /// (read by `tune`; `run` and `sweep` ignore it).
    #[serde(default)]
    pub tune: Option<toml::Table>,
    /// Parameter sweep: paths into this file (as for `--set`) → values; the
    /// runs are the cartesian product, times `seeds`.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    /// A file holding the `[[service]]` and `[[client]]` tables (merged in
    /// before checking; relative to the experiment).
    #[serde(default)]
    pub topology: Option<String>,
    /// The Istio objects from files: a TOML mesh file, Kubernetes YAML, or a
    /// directory of them; one path or a list (merged in before checking;
    /// relative to the experiment).
    #[serde(default)]
    pub mesh: Option<MeshFiles>,
    /// Services and their pods.
    #[serde(default)]
    pub service: Vec<ServiceModel>,
    /// The calling proxies.
    #[serde(default)]
    pub client: Vec<ClientModel>,
    /// The load.
    pub load: LoadModel,
    /// Scheduled events.
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    /// Istio VirtualServices.
    #[serde(default)]
    pub virtual_service: Vec<mesh::VirtualService>,
    /// Istio DestinationRules.
    #[serde(default)]
    pub destination_rule: Vec<mesh::DestinationRule>,
    /// Istio Gateways.
    #[serde(default)]
    pub gateway: Vec<mesh::Gateway>,
    /// Istio ServiceEntries.
    #[serde(default)]
    pub service_entry: Vec<mesh::ServiceEntry>,
}

/// A service of the topology.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceModel {
    /// Short name (namespace `default`); also the prefix of its pod names.
    pub name: String,
    /// Port.
    pub port: u16,
    /// A service outside the mesh (an external API): its pods are the
    /// endpoints of a generated `ServiceEntry` (`MESH_EXTERNAL`, `STATIC`)
    /// on `host`, not a Kubernetes service, and they have no sidecar.
    #[serde(default)]
    pub external: Option<bool>,
    /// External services only: the full host callers use, e.g. `api.example.com`.
    #[serde(default)]
    pub host: Option<String>,
    /// Calls every pod makes for each request it serves, through its own
    /// sidecar, before its own latency; a version with its own `call` list
    /// replaces this one.
    #[serde(default)]
    pub call: Vec<CallModel>,
    /// How the calls are made: `sequential` (default, in order, each after
    /// the previous answered) or `parallel` (all at once).
    #[serde(default)]
    pub call_mode: Option<String>,
    /// Versions (subset labels `version = <name>`).
    pub version: Vec<VersionModel>,
    /// Envoy worker threads of the sidecar of each of its pods that makes
    /// calls (Istio's `concurrency`; 2 when absent, as Istio sets it).
    #[serde(default)]
    pub proxy_concurrency: Option<u32>,
}

/// A call a pod makes for each request it serves (one edge of the call graph).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallModel {
    /// Authority of the outbound request: a service (`ratings`,
    /// `ratings:9080`, `ratings.default.svc.cluster.local`) or an external
    /// host; the pod's sidecar routes it like any request.
    pub host: String,
    /// Path (`/` when absent).
    #[serde(default)]
    pub path: Option<String>,
    /// The calling application's own timeout: it gives up after this long
    /// (the sidecar then resets the upstream request) and treats the call as
    /// failed. None when absent (the sidecar's route timeout still applies).
    #[serde(default)]
    pub timeout: Option<IstioDuration>,
    /// Inbound request headers the application copies onto this call
    /// (lowercase names, e.g. `["end-user", "x-request-id"]`); headers not
    /// listed are not forwarded (reference §7). None when absent.
    #[serde(default)]
    pub propagate: Vec<String>,
    /// Fixed headers the application sets on this call (after propagation).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What a failed call (final answer ≥ 500, or `timeout`) does to the
    /// request being served: `fail` (default; the pod answers 500) or
    /// `ignore` (a fallback: the pod answers as if the call succeeded).
    #[serde(default)]
    pub on_error: Option<String>,
}

/// One version of a service: its pods and how they behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VersionModel {
    /// Version label.
    pub name: String,
    /// Number of pods.
    pub pods: u32,
    /// Service time of one request.
    pub latency: LatencyModel,
    /// Probability (0–1) that a request fails with `errorStatus`.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Status of those failures (500 when absent).
    #[serde(default)]
    pub error_status: Option<u16>,
    /// Requests served at once per pod (unlimited when absent).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Requests waiting per pod beyond `concurrency` (then 503); unlimited when absent.
    #[serde(default)]
    pub queue: Option<u32>,
    /// Time to set up a connection to one of its pods (TCP and the mesh's
    /// mTLS handshake): requests queue in the caller's pool meanwhile, and
    /// the connection counts against `maxConnections` from the start.
    /// Instant when absent.
    #[serde(default)]
    pub connect_time: Option<IstioDuration>,
    /// This version's calls, replacing the service's `call` list (`call = []`:
    /// this version makes none).
    #[serde(default)]
    pub call: Option<Vec<CallModel>>,
    /// This version's `callMode`, replacing the service's.
    #[serde(default)]
    pub call_mode: Option<String>,
}

/// A latency distribution (see `sample`: exact, pure-Rust samplers).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LatencyModel {
    /// `constant`, `exponential`, `lognormal`, `normal`, `uniform` or `pareto`.
    pub distribution: String,
    /// `constant`: the value.
    #[serde(default)]
    pub value: Option<IstioDuration>,
    /// `exponential`, `normal`: the mean.
    #[serde(default)]
    pub mean: Option<IstioDuration>,
    /// `lognormal`: the median.
    #[serde(default)]
    pub median: Option<IstioDuration>,
    /// `lognormal`: sigma of the underlying normal; `normal`: not used.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// `normal`: standard deviation.
    #[serde(default)]
    pub stddev: Option<IstioDuration>,
    /// `uniform`: bounds.
    #[serde(default)]
    pub min: Option<IstioDuration>,
    /// `uniform`: bounds.
    #[serde(default)]
    pub max: Option<IstioDuration>,
    /// `pareto`: scale (the minimum).
    #[serde(default)]
    pub scale: Option<IstioDuration>,
    /// `pareto`: shape.
    #[serde(default)]
    pub shape: Option<f64>,
}

/// Calling proxies: `pods` sidecars of one workload, or a gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientModel {
    /// Name, referenced by `load.client`.
    pub name: String,
    /// Number of proxies (each with its own engine), 1 when absent.
    #[serde(default)]
    pub pods: Option<u32>,
    /// Namespace of the workload (`default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the workload (for `sourceLabels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Route as this gateway (a `[[gateway]]` name) instead of a sidecar.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Envoy worker threads of each of these proxies (Istio's `concurrency`;
    /// 2 when absent, as Istio sets a sidecar's): each worker balances and
    /// pools connections on its own, outlier detection and breakers are
    /// shared.
    #[serde(default)]
    pub proxy_concurrency: Option<u32>,
}

/// The load, in fortio's vocabulary.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadModel {
    /// The `[[client]]` that sends it.
    pub client: String,
    /// Authority of the requests (a service host, or a gateway host).
    pub host: String,
    /// Path (`/` when absent).
    #[serde(default)]
    pub path: Option<String>,
    /// Open loop: requests per second, over all proxies of the client.
    #[serde(default)]
    pub qps: Option<f64>,
    /// Open loop arrivals: `poisson` (default) or `uniform`.
    #[serde(default)]
    pub arrivals: Option<String>,
    /// Closed loop: connections, each sending its next request when the
    /// previous one is answered.
    #[serde(default)]
    pub connections: Option<u32>,
    /// Total requests to send (fortio's `-n`); unlimited when absent (the
    /// run still ends at `duration`).
    #[serde(default)]
    pub requests: Option<u64>,
    /// Closed loop: time a connection waits after an answer before sending
    /// its next request (fortio's loop and the client's network turnaround);
    /// 0 when absent.
    #[serde(default)]
    pub turnaround: Option<IstioDuration>,
    /// Users: each request comes from a uniformly drawn user id
    /// `user-<n>`, sent in `userHeader` and/or the cookie `userCookie`.
    #[serde(default)]
    pub users: Option<u32>,
    /// Header carrying the user id.
    #[serde(default)]
    pub user_header: Option<String>,
    /// Cookie carrying the user id.
    #[serde(default)]
    pub user_cookie: Option<String>,
    /// Fixed headers of every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A scheduled event. `at` plus exactly one action.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimelineEvent {
    /// When.
    pub at: IstioDuration,
    /// The pod (`<service>-<version>-<index>`) a pod action applies to.
    #[serde(default)]
    pub pod: Option<String>,
    /// The pod answers `status` with `probability` (1 when absent).
    #[serde(default)]
    pub fail: Option<FailAction>,
    /// The pod's latency is multiplied by `factor`.
    #[serde(default)]
    pub slow: Option<SlowAction>,
    /// The pod crashes: connections are refused.
    #[serde(default)]
    pub crash: Option<bool>,
    /// The pod behaves as configured again.
    #[serde(default)]
    pub recover: Option<bool>,
    /// Load change: the new open-loop qps.
    #[serde(default)]
    pub qps: Option<f64>,
    /// A new mesh config pushed to every proxy (replacing the Istio objects).
    #[serde(default)]
    pub push: Option<Push>,
}

/// `fail = { status, probability }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FailAction {
    /// Status returned.
    pub status: u16,
    /// Probability 0–1 (1 when absent).
    #[serde(default)]
    pub probability: Option<f64>,
}

/// `slow = { factor }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlowAction {
    /// Latency multiplier.
    pub factor: f64,
}

/// `mesh = "istio/"` or `mesh = ["istio/", "extra.yaml"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum MeshFiles {
    /// One file or directory.
    One(String),
    /// Several, merged in order.
    Many(Vec<String>),
}

impl MeshFiles {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Self::One(p) => vec![p.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A config push: the new Istio objects and the propagation delay to each proxy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Push {
    /// Delay between the push and the proxies applying it (0 when absent).
    #[serde(default)]
    pub propagation: Option<IstioDuration>,
    /// The Istio objects after the push, from files (as the experiment's `mesh`).
    #[serde(default)]
    pub mesh: Option<MeshFiles>,
    /// VirtualServices after the push.
    #[serde(default)]
    pub virtual_service: Vec<mesh::VirtualService>,
    /// DestinationRules after the push.
    #[serde(default)]
    pub destination_rule: Vec<mesh::DestinationRule>,
    /// Gateways after the push.
    #[serde(default)]
    pub gateway: Vec<mesh::Gateway>,
    /// ServiceEntries after the push.
    #[serde(default)]
    pub service_entry: Vec<mesh::ServiceEntry>,
}

/// The port every generated pod address uses is the service port; pods get
/// addresses `10.<service>.<version>.<pod>` (pod index split over two octets).
pub fn pod_address(service: usize, version: usize, pod: u32, port: u16) -> String {
    format!(
        "10.{}.{}.{}:{port}",
        service + 1,
        version * 8 + (pod / 250) as usize,
        pod % 250 + 1
    )
}

/// The IP of a pod (its address without the port), as a `ServiceEntry`
/// endpoint writes it.
pub fn pod_ip(service: usize, version: usize, pod: u32) -> String {
    let a = pod_address(service, version, pod, 0);
    a.strip_suffix(":0").unwrap_or(&a).to_owned()
}

/// The labels of a pod: `app = <service>`, `version = <version>`.
fn pod_labels(service: &str, version: &str) -> BTreeMap<String, String> {
    [
        ("app".to_owned(), service.to_owned()),
        ("version".to_owned(), version.to_owned()),
    ]
    .into_iter()
    .collect()
}

/// The mesh config of the experiment: the registry generated from the
/// topology plus the given Istio objects. A mesh service becomes a registry
/// `[[service]]` (one endpoint per pod); an `external` one becomes a
/// `ServiceEntry` named after it on its `host` (`MESH_EXTERNAL`, resolution
/// `STATIC`, one endpoint per pod), appended after the given ones, unless
/// the user's own ServiceEntry (with no endpoints: resolution `DNS`) names
/// that host: then the pods become its endpoints.
pub fn mesh_config(
    services: &[ServiceModel],
    vs: &[mesh::VirtualService],
    dr: &[mesh::DestinationRule],
    gw: &[mesh::Gateway],
    se: &[mesh::ServiceEntry],
) -> mesh::MeshConfig {
    let external = |s: &ServiceModel| s.external == Some(true);
    let mut service_entry = se.to_vec();
    for (si, s) in services.iter().enumerate().filter(|(_, s)| external(s)) {
        let host = s.host.clone().unwrap_or_else(|| s.name.clone());
        let endpoints: Vec<mesh::WorkloadEntry> = s
            .version
            .iter()
            .enumerate()
            .flat_map(|(vi, v)| {
                (0..v.pods).map(move |p| mesh::WorkloadEntry {
                    address: pod_ip(si, vi, p),
                    ports: BTreeMap::new(),
                    labels: pod_labels(&s.name, &v.name),
                    weight: None,
                })
            })
            .collect();
        // The user's own ServiceEntry for this host (resolution DNS, say):
        // the simulated pods are what its name resolves to.
        if let Some(user) = service_entry.iter_mut().find(|e| {
            e.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) && e.endpoints.is_empty()
        }) {
            user.endpoints = endpoints;
            user.resolution = Some("STATIC".to_owned());
            continue;
        }
        service_entry.push(mesh::ServiceEntry {
            name: s.name.clone(),
            namespace: None,
            hosts: vec![host],
            ports: vec![mesh::Port {
                number: s.port,
                protocol: Some("HTTP".to_owned()),
                name: Some("http".to_owned()),
                target_port: None,
            }],
            location: Some("MESH_EXTERNAL".to_owned()),
            resolution: Some("STATIC".to_owned()),
            endpoints,
            export_to: Vec::new(),
        });
    }
    mesh::MeshConfig {
        // Listeners are the proxy's; a simulated proxy listens nowhere.
        listener: Vec::new(),
        service: services
            .iter()
            .enumerate()
            .filter(|(_, s)| !external(s))
            .map(|(si, s)| mesh::ServiceSpec {
                name: s.name.clone(),
                namespace: None,
                port: s.port,
                endpoints: s
                    .version
                    .iter()
                    .enumerate()
                    .flat_map(|(vi, v)| {
                        (0..v.pods).map(move |p| mesh::EndpointSpec {
                            address: pod_address(si, vi, p, s.port),
                            labels: pod_labels(&s.name, &v.name),
                            weight: None,
                        })
                    })
                    .collect(),
            })
            .collect(),
        virtual_service: vs.to_vec(),
        destination_rule: dr.to_vec(),
        gateway: gw.to_vec(),
        service_entry,
    }
}

/// Validation helpers shared by [`crate::run`] when it builds a run.
pub(crate) fn positive(
    d: &Option<IstioDuration>,
    path: FieldPath,
    errors: &mut Vec<ConfigError>,
) -> Option<Duration> {
    let d = d.as_ref()?;
    if d.value.is_zero() {
        errors.push(err(
            path,
            format!("expected a positive duration, found \"{}\"", d.text),
        ));
        return None;
    }
    Some(d.value)
}

pub(crate) fn err(path: FieldPath, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        file: None,
        path,
        code: None,
        message: msg.into(),
        location: None,
    }
}

/// Parses an experiment from TOML text (`file` names it in messages).
pub fn parse(source: &str, file: Option<&str>) -> Result<ExperimentFile, config::ConfigErrors> {
    toml::from_str(source)
        .map_err(|e| config::ConfigErrors(vec![config::toml_error(&e, source, file)]))
}
