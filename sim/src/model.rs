//! Building a run from an experiment file: checked topology, pods, latency
//! distributions, proxies and their configs. All validation happens here,
//! with the field path of every problem.

use std::sync::Arc;
use std::time::Duration;

use mesh_engine::config::{self, Config, ConfigError, FieldPath};
use mesh_engine::{ProxySpec, Time};
use rand::RngExt as _;
use rand::distr::{Distribution, Uniform};
use rand_pcg::Pcg64Mcg;

use crate::callgraph::{self, CallGraph};
use crate::experiment::{self as x, ExperimentFile, err, positive};
use crate::sample;

/// A latency distribution, sampled in nanoseconds (see [`crate::sample`]:
/// every draw is pure-Rust float math, the same on any machine).
#[derive(Clone, Debug)]
pub(crate) enum Latency {
    Constant(u64),
    /// Mean, in nanoseconds.
    Exponential {
        mean: f64,
        z: &'static sample::Ziggurat,
    },
    /// ln of the median in nanoseconds (μ), and σ.
    LogNormal {
        mu: f64,
        sigma: f64,
        z: &'static sample::Ziggurat,
    },
    /// Mean and standard deviation, in nanoseconds.
    Normal {
        mean: f64,
        stddev: f64,
        z: &'static sample::Ziggurat,
    },
    Uniform(Uniform<f64>),
    /// Scale (the minimum), in nanoseconds, and -1 / shape.
    Pareto {
        scale: f64,
        inv_neg_shape: f64,
    },
}

impl Latency {
    pub(crate) fn sample_ns(&self, rng: &mut Pcg64Mcg) -> u64 {
        let v = match *self {
            Self::Constant(ns) => return ns,
            Self::Exponential { mean, z } => mean * sample::standard_exponential(z, rng),
            Self::LogNormal { mu, sigma, z } => {
                libm::exp(mu + sigma * sample::standard_normal(z, rng))
            }
            Self::Normal { mean, stddev, z } => mean + stddev * sample::standard_normal(z, rng),
            Self::Uniform(ref d) => d.sample(rng),
            Self::Pareto {
                scale,
                inv_neg_shape,
            } => {
                // u in (0, 1], so u^(-1/shape) ≥ 1: values from `scale` up.
                scale * libm::pow(sample::open_closed01(rng), inv_neg_shape)
            }
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ns = v.max(0.0) as u64;
        ns
    }
}

fn secs_ns(d: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let ns = d.as_nanos() as f64;
    ns
}

fn latency(m: &x::LatencyModel, path: &FieldPath, errors: &mut Vec<ConfigError>) -> Latency {
    let mut need = |v: &Option<config::IstioDuration>, field: &str| -> f64 {
        match v {
            Some(d) => secs_ns(d.value),
            None => {
                errors.push(err(
                    path.key(field),
                    format!("`{}` needs `{field}`", m.distribution),
                ));
                1.0
            }
        }
    };
    let built = match m.distribution.as_str() {
        "constant" => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let ns = need(&m.value, "value") as u64;
            Ok(Latency::Constant(ns))
        }
        "exponential" => {
            // A mean below a nanosecond counts as one, as before; kept as
            // 1 / (1 / mean), bit for bit the scale of earlier versions.
            let mean = 1.0 / (1.0 / need(&m.mean, "mean").max(1.0));
            Ok(Latency::Exponential {
                mean,
                z: sample::exponential_table(),
            })
        }
        "lognormal" => {
            let median = need(&m.median, "median").max(1.0);
            match m.sigma.unwrap_or(0.5) {
                // A negative σ draws as its opposite (the normal is symmetric).
                sigma if sigma.is_finite() => Ok(Latency::LogNormal {
                    mu: libm::log(median),
                    sigma,
                    z: sample::normal_table(),
                }),
                sigma => Err(format!("`sigma` must be a finite number, found {sigma}")),
            }
        }
        "normal" => {
            let (mean, stddev) = (need(&m.mean, "mean"), need(&m.stddev, "stddev"));
            if stddev.is_finite() {
                Ok(Latency::Normal {
                    mean,
                    stddev,
                    z: sample::normal_table(),
                })
            } else {
                Err("`stddev` must be finite".to_owned())
            }
        }
        "uniform" => {
            let (lo, hi) = (need(&m.min, "min"), need(&m.max, "max"));
            Uniform::new_inclusive(lo, hi)
                .map(Latency::Uniform)
                .map_err(|e| e.to_string())
        }
        "pareto" => match (need(&m.scale, "scale"), m.shape.unwrap_or(2.0)) {
            (scale, _) if scale.is_nan() || scale <= 0.0 => {
                Err("`scale` must be positive".to_owned())
            }
            (_, shape) if shape.is_nan() || shape <= 0.0 => {
                Err(format!("`shape` must be positive, found {shape}"))
            }
            (scale, shape) => Ok(Latency::Pareto {
                scale,
                inv_neg_shape: -1.0 / shape,
            }),
        },
        other => Err(format!(
            "expected one of constant, exponential, lognormal, normal, uniform, pareto, found \"{other}\""
        )),
    };
    built.unwrap_or_else(|why| {
        errors.push(err(
            path.key("distribution"),
            format!("invalid latency distribution: {why}"),
        ));
        Latency::Constant(0)
    })
}

/// How a pod behaves right now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mode {
    Normal,
    Fail { status: u16, ppm: u32 },
    Slow { factor: f64 },
    Crashed,
}

/// One pod.
#[derive(Debug)]
pub(crate) struct PodSpec {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) service: String,
    pub(crate) version: String,
    /// What the pod does per request beyond its own latency (its calls), if anything.
    pub(crate) workload: Option<u32>,
    /// Its sidecar (an index into the proxies), if it makes calls.
    pub(crate) proxy: Option<u32>,
    pub(crate) latency: Latency,
    pub(crate) error_ppm: u32,
    pub(crate) error_status: u16,
    pub(crate) concurrency: u32,
    pub(crate) queue: u32,
    /// Time to set up a connection to it (zero: instant).
    pub(crate) connect: Duration,
}

/// A calling proxy.
#[derive(Debug)]
pub(crate) struct ProxyModel {
    pub(crate) name: String,
    pub(crate) spec: ProxySpec,
    /// Envoy worker threads (1 or more).
    pub(crate) workers: u32,
}

/// A timeline action, checked.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    Pod {
        pod: usize,
        mode: Mode,
    },
    Qps(f64),
    Push {
        config: Arc<Config>,
        propagation: Duration,
    },
}

/// The load, checked.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    pub(crate) proxies: std::ops::Range<usize>,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) qps: Option<f64>,
    pub(crate) uniform: bool,
    pub(crate) connections: Option<u32>,
    pub(crate) turnaround: Duration,
    pub(crate) requests: u64,
    pub(crate) users: u32,
}

/// Everything a run needs, checked.
#[derive(Debug)]
pub struct Model {
    pub(crate) name: String,
    pub(crate) duration: Time,
    pub(crate) window: Duration,
    pub(crate) seed: u64,
    pub(crate) max_events: u64,
    pub(crate) config: Arc<Config>,
    pub(crate) pods: Vec<PodSpec>,
    pub(crate) proxies: Vec<ProxyModel>,
    pub(crate) load: Load,
    pub(crate) timeline: Vec<(Time, Action)>,
    /// The call graph and the pre-built header tables.
    pub(crate) calls: CallGraph,
}

/// Moves the mesh config's problems under `prefix` (the file's root, or a
/// push). The registry and the external services' ServiceEntries are
/// generated from `[[service]]`: their problems point at the topology.
fn mesh_errors(
    e: Vec<ConfigError>,
    out: &mut Vec<ConfigError>,
    prefix: &FieldPath,
    f: &ExperimentFile,
    user_entries: usize,
) {
    use mesh_engine::config::Segment;
    // Generated registry index → experiment service index, and the same for
    // generated ServiceEntries (after the `user_entries` written ones).
    let internal: Vec<usize> = (0..f.service.len())
        .filter(|&i| f.service[i].external != Some(true))
        .collect();
    let external: Vec<usize> = (0..f.service.len())
        .filter(|&i| f.service[i].external == Some(true))
        .collect();
    for mut c in e {
        let topology = match c.path.0.as_slice() {
            [Segment::Key(k), Segment::Index { index, .. }, ..] if k == "service" => {
                internal.get(*index).copied()
            }
            [Segment::Key(k), Segment::Index { index, .. }, ..]
                if k == "serviceEntry" && *index >= user_entries =>
            {
                external.get(*index - user_entries).copied()
            }
            _ => None,
        };
        let mut segs = match topology {
            Some(si) => {
                let entry = matches!(&c.path.0[0], Segment::Key(k) if k == "serviceEntry");
                c.path.0.drain(..2);
                // A generated ServiceEntry's fields come from the service's.
                if entry && let Some(Segment::Key(k)) = c.path.0.first() {
                    let field = match k.as_str() {
                        "hosts" => Some("host"),
                        "ports" => Some("port"),
                        "endpoints" => Some("version"),
                        _ => None,
                    };
                    if let Some(field) = field {
                        c.path.0.clear();
                        c.path.0.push(Segment::Key(field.to_owned()));
                    }
                }
                FieldPath::root()
                    .key("service")
                    .named(si, &f.service[si].name)
                    .0
            }
            None => prefix.0.clone(),
        };
        segs.append(&mut c.path.0);
        c.path = FieldPath(segs);
        out.push(c);
    }
}

impl Model {
    /// Checks an experiment and builds its model; every problem is reported
    /// with its field path (line:column is added by the caller from the text).
    pub fn build(
        f: &ExperimentFile,
        seed_override: Option<u64>,
    ) -> Result<(Self, Vec<ConfigError>), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let root = FieldPath::root();
        // Refuse what cannot fit before building anything of it.
        if let Some((limit, source)) = crate::budget::limit()
            && let Some((path, why)) =
                crate::budget::check(&crate::budget::estimate(f), limit, source)
        {
            return Err(vec![err(path, why)]);
        }
        let duration = positive(&Some(f.duration.clone()), root.key("duration"), &mut errors)
            .unwrap_or(Duration::from_secs(1));
        let window =
            positive(&f.window, root.key("window"), &mut errors).unwrap_or(Duration::from_secs(1));
        // The call graph, external services and header tables.
        let calls = callgraph::build(f, &mut errors);
        // Pods.
        let mut pods = Vec::new();
        if f.service.is_empty() {
            errors.push(err(
                root.key("service"),
                "expected at least one [[service]] with versions and pods",
            ));
        }
        let mut service_workers = std::collections::BTreeMap::new();
        for (si, s) in f.service.iter().enumerate() {
            let sp = root.key("service").named(si, &s.name);
            service_workers.insert(
                s.name.as_str(),
                concurrency(s.proxy_concurrency, &sp, &mut errors),
            );
            if s.version.is_empty() {
                errors.push(err(
                    sp.key("version"),
                    "expected at least one [[service.version]]",
                ));
            }
            for (vi, v) in s.version.iter().enumerate() {
                let vp = sp.key("version").named(vi, &v.name);
                let lat = latency(&v.latency, &vp.key("latency"), &mut errors);
                let rate = v.error_rate.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&rate) {
                    errors.push(err(
                        vp.key("errorRate"),
                        format!("expected a probability from 0 to 1, found {rate}"),
                    ));
                }
                if v.pods == 0 {
                    errors.push(err(vp.key("pods"), "expected at least 1 pod"));
                }
                for p in 0..v.pods {
                    pods.push(PodSpec {
                        name: format!("{}-{}-{p}", s.name, v.name),
                        address: x::pod_address(si, vi, p, s.port),
                        service: s.name.clone(),
                        version: v.name.clone(),
                        workload: calls
                            .workload_of
                            .get(si)
                            .and_then(|w| w.get(vi))
                            .copied()
                            .flatten(),
                        proxy: None,
                        latency: lat.clone(),
                        error_ppm: ppm(rate),
                        error_status: v.error_status.unwrap_or(500),
                        concurrency: v.concurrency.unwrap_or(u32::MAX).max(1),
                        queue: v.queue.unwrap_or(u32::MAX),
                        connect: v.connect_time.as_ref().map_or(Duration::ZERO, |d| d.value),
                    });
                }
            }
        }
        // The mesh config: registry from the topology + Istio objects.
        let mesh = x::mesh_config(
            &f.service,
            &f.virtual_service,
            &f.destination_rule,
            &f.gateway,
            &f.service_entry,
        );
        let (config, mut warnings) = match config::validate(mesh) {
            Ok((c, w)) => (Some(Arc::new(c)), w),
            Err(e) => {
                mesh_errors(e, &mut errors, &root, f, f.service_entry.len());
                (None, Vec::new())
            }
        };
        // Proxies.
        let mut proxies = Vec::new();
        let mut load_range = 0..0;
        let mut found = false;
        for (ci, c) in f.client.iter().enumerate() {
            let cp = root.key("client").named(ci, &c.name);
            let start = proxies.len();
            let n = c.pods.unwrap_or(1);
            if n == 0 {
                errors.push(err(cp.key("pods"), "expected at least 1 proxy"));
            }
            let ns = c.namespace.clone().unwrap_or_else(|| "default".to_owned());
            if let (Some(g), Some(cfg)) = (&c.gateway, &config) {
                let full = if g.contains('/') {
                    g.clone()
                } else {
                    format!("{ns}/{g}")
                };
                if !cfg.gateways.contains(&full) {
                    errors.push(err(
                        cp.key("gateway"),
                        format!("unknown gateway \"{g}\": expected the name of a [[gateway]]"),
                    ));
                }
            }
            let workers = concurrency(c.proxy_concurrency, &cp, &mut errors);
            for i in 0..n {
                let spec = match &c.gateway {
                    Some(g) => {
                        let (gns, name) = g.split_once('/').unwrap_or((&ns, g));
                        ProxySpec::gateway(gns, name)
                    }
                    None => ProxySpec {
                        namespace: ns.clone(),
                        labels: c.labels.clone(),
                        gateway: None,
                    },
                };
                proxies.push(ProxyModel {
                    name: format!("{}-{i}", c.name),
                    spec,
                    workers,
                });
            }
            if c.name == f.load.client {
                load_range = start..proxies.len();
                found = true;
            }
        }
        let lp = root.key("load");
        if !found {
            errors.push(err(
                lp.key("client"),
                format!(
                    "unknown client \"{}\": expected the name of a [[client]]",
                    f.load.client
                ),
            ));
        }
        let l = &f.load;
        match (l.qps, l.connections) {
            (Some(q), None) if q > 0.0 && q.is_finite() => {}
            (None, Some(c)) if c > 0 => {}
            (Some(_), Some(_)) => errors.push(err(
                lp.clone(),
                "expected either `qps` (open loop) or `connections` (closed loop), not both",
            )),
            (None, None) => errors.push(err(
                lp.clone(),
                "expected `qps` (open loop) or `connections` (closed loop)",
            )),
            (Some(q), _) => errors.push(err(
                lp.key("qps"),
                format!("expected a positive rate, found {q}"),
            )),
            (_, Some(_)) => {
                errors.push(err(lp.key("connections"), "expected at least 1 connection"))
            }
        }
        let uniform = match l.arrivals.as_deref() {
            None | Some("poisson") => false,
            Some("uniform") => true,
            Some(o) => {
                errors.push(err(
                    lp.key("arrivals"),
                    format!("expected \"poisson\" or \"uniform\", found \"{o}\""),
                ));
                false
            }
        };
        let load = Load {
            proxies: load_range,
            host: l.host.clone(),
            path: l.path.clone().unwrap_or_else(|| "/".to_owned()),
            qps: l.qps,
            uniform,
            connections: l.connections,
            turnaround: l.turnaround.as_ref().map_or(Duration::ZERO, |d| d.value),
            requests: l.requests.unwrap_or(u64::MAX),
            users: l.users.unwrap_or(0),
        };
        // Every pod that makes calls gets its own sidecar (its own outlier
        // detectors and breakers), after the clients' proxies.
        for pod in pods.iter_mut().filter(|p| p.workload.is_some()) {
            pod.proxy = Some(u32::try_from(proxies.len()).unwrap_or(u32::MAX));
            proxies.push(ProxyModel {
                name: pod.name.clone(),
                spec: ProxySpec {
                    namespace: "default".to_owned(),
                    labels: [
                        ("app".to_owned(), pod.service.clone()),
                        ("version".to_owned(), pod.version.clone()),
                    ]
                    .into_iter()
                    .collect(),
                    gateway: None,
                },
                workers: service_workers
                    .get(pod.service.as_str())
                    .copied()
                    .unwrap_or(1),
            });
        }
        if let Some(cfg) = &config {
            warnings.extend(unrouted_calls(f, cfg, &calls, &pods, &proxies));
        }
        // Timeline.
        let mut timeline = Vec::new();
        for (i, t) in f.timeline.iter().enumerate() {
            let tp = root.key("timeline").index(i);
            let at = Time::ZERO + t.at.value;
            let actions = usize::from(t.fail.is_some())
                + usize::from(t.slow.is_some())
                + usize::from(t.crash == Some(true))
                + usize::from(t.recover == Some(true))
                + usize::from(t.qps.is_some())
                + usize::from(t.push.is_some());
            if actions != 1 {
                errors.push(err(tp.clone(), format!("expected exactly one action (fail, slow, crash, recover, qps or push), found {actions}")));
                continue;
            }
            let pod_mode = if let Some(fa) = &t.fail {
                let p = fa.probability.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&p) {
                    errors.push(err(
                        tp.key("fail").key("probability"),
                        format!("expected a probability from 0 to 1, found {p}"),
                    ));
                }
                Some(Mode::Fail {
                    status: fa.status,
                    ppm: ppm(p),
                })
            } else if let Some(sl) = &t.slow {
                if !(sl.factor > 0.0 && sl.factor.is_finite()) {
                    errors.push(err(
                        tp.key("slow").key("factor"),
                        format!("expected a positive factor, found {}", sl.factor),
                    ));
                }
                Some(Mode::Slow { factor: sl.factor })
            } else if t.crash == Some(true) {
                Some(Mode::Crashed)
            } else if t.recover == Some(true) {
                Some(Mode::Normal)
            } else {
                None
            };
            if let Some(mode) = pod_mode {
                let Some(name) = &t.pod else {
                    errors.push(err(
                        tp.key("pod"),
                        "expected the pod this applies to, e.g. pod = \"backend-v1-3\"",
                    ));
                    continue;
                };
                match pods.iter().position(|p| &p.name == name) {
                    Some(pod) => timeline.push((at, Action::Pod { pod, mode })),
                    None => errors.push(err(tp.key("pod"), format!("unknown pod \"{name}\": pods are named <service>-<version>-<index>, e.g. \"{}\"", pods.first().map_or("backend-v1-0", |p| p.name.as_str())))),
                }
            } else if let Some(q) = t.qps {
                if load.qps.is_none() || q <= 0.0 {
                    errors.push(err(
                        tp.key("qps"),
                        "a qps change needs an open-loop load (`load.qps`) and a positive rate",
                    ));
                }
                timeline.push((at, Action::Qps(q)));
            } else if let Some(push) = &t.push {
                let mesh = x::mesh_config(
                    &f.service,
                    &push.virtual_service,
                    &push.destination_rule,
                    &push.gateway,
                    &push.service_entry,
                );
                match config::validate(mesh) {
                    Ok((c, w)) => {
                        warnings.extend(w.into_iter().map(|mut w| {
                            let mut segs = tp.key("push").0;
                            segs.append(&mut w.path.0);
                            w.path = FieldPath(segs);
                            w
                        }));
                        timeline.push((
                            at,
                            Action::Push {
                                config: Arc::new(c),
                                propagation: push
                                    .propagation
                                    .as_ref()
                                    .map_or(Duration::ZERO, |d| d.value),
                            },
                        ));
                    }
                    Err(e) => {
                        mesh_errors(e, &mut errors, &tp.key("push"), f, push.service_entry.len())
                    }
                }
            }
        }
        timeline.sort_by_key(|(t, _)| *t);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((
            Self {
                name: f.name.clone(),
                duration: Time::ZERO + duration,
                window,
                seed: seed_override.or(f.seed).unwrap_or(1),
                max_events: f.max_events.unwrap_or(DEFAULT_MAX_EVENTS),
                config: config.expect("validated"),
                pods,
                proxies,
                load,
                timeline,
                calls,
            },
            warnings,
        ))
    }
}

impl Model {
    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The simulated duration, as Istio writes durations.
    pub fn duration_text(&self) -> String {
        mesh_engine::config::format_duration(self.duration - Time::ZERO)
    }
}

/// Warnings for calls that no route of the caller's sidecar serves (every
/// such call would be answered 404 `NR`), checked against the initial config.
fn unrouted_calls(
    f: &ExperimentFile,
    cfg: &Arc<Config>,
    calls: &CallGraph,
    pods: &[PodSpec],
    proxies: &[ProxyModel],
) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for (si, s) in f.service.iter().enumerate() {
        for (vi, v) in s.version.iter().enumerate() {
            let Some(w) = calls.workload_of[si][vi] else {
                continue;
            };
            let Some(proxy) = pods
                .iter()
                .find(|p| p.workload == Some(w))
                .and_then(|p| p.proxy)
            else {
                continue;
            };
            let spec = proxies[proxy as usize].spec.clone();
            let mut engine = mesh_engine::Engine::new(cfg.clone(), spec, 0);
            for (ci, c) in calls.workloads[w as usize].calls.iter().enumerate() {
                // On the port the run will use (see `run::app_request`).
                let req = mesh_engine::Request {
                    port: engine.destination_port(&c.host).unwrap_or(80),
                    ..mesh_engine::Request::get(&c.host, &c.path)
                };
                if let mesh_engine::Decision::Reject(r) = engine.handle_request(&req, Time::ZERO)
                    && r.reason == mesh_engine::RejectReason::NoRoute
                {
                    let vp = FieldPath::root()
                        .key("service")
                        .named(si, &s.name)
                        .key("version")
                        .named(vi, &v.name);
                    let path = if v.call.is_some() {
                        vp.key("call").index(ci)
                    } else {
                        FieldPath::root()
                            .key("service")
                            .named(si, &s.name)
                            .key("call")
                            .index(ci)
                    };
                    out.push(err(
                        path.key("host"),
                        format!(
                            "no route for \"{}\" from the sidecars of {}-{}: every such call is answered 404 (NR); name a [[service]], an external service's host, or a VirtualService host",
                            c.host, s.name, v.name
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// The default `maxEvents` guard: far above any sensible run (a 1,000 qps,
/// one-hour, one-hop run takes about 20 million events), low enough that a
/// runaway model fails in minutes rather than never.
pub const DEFAULT_MAX_EVENTS: u64 = 2_000_000_000;

fn ppm(p: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (p.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
    v
}

/// A uniform draw below `ppm` parts per million.
pub(crate) fn hit(rng: &mut Pcg64Mcg, ppm: u32) -> bool {
    ppm > 0 && (ppm >= 1_000_000 || rng.random_range(0..1_000_000u32) < ppm)
}

/// Envoy worker threads of a proxy (`proxyConcurrency`): 1 when absent.
fn concurrency(v: Option<u32>, path: &FieldPath, errors: &mut Vec<ConfigError>) -> u32 {
    match v {
        None => 2,
        Some(n @ 1..=64) => n,
        Some(n) => {
            errors.push(err(
                path.key("proxyConcurrency"),
                format!("expected 1 to 64 worker threads, found {n}"),
            ));
            1
        }
    }
}
