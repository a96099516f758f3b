//! The admin listener (loopback by default): `/stats` (Prometheus text),
//! `/clusters` (endpoint health and ejection state, Envoy's format),
//! `/config_dump` (the config in force) and `/ready`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use mesh_engine::ClusterId;
use tokio::net::TcpListener;

use crate::proxy::{Shared, lock};

/// Serves the admin listener until the process exits: through a drain,
/// so that `/ready` answers `503 DRAINING` and `/stats` stays readable.
pub(crate) async fn serve(sh: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let sh = sh.clone();
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let sh = sh.clone();
                async move { Ok::<_, Infallible>(answer(&sh, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: u16, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

pub(crate) fn answer(sh: &Shared, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/ready" => {
            if sh.ready.load(Ordering::Acquire) {
                text(200, "LIVE\n".into(), "text/plain")
            } else {
                text(503, "DRAINING\n".into(), "text/plain")
            }
        }
        "/stats" | "/stats/prometheus" => text(200, stats(sh), "text/plain; version=0.0.4"),
        "/clusters" => text(200, clusters(sh), "text/plain"),
        "/config_dump" => text(200, lock(&sh.config_text).clone(), "application/toml"),
        "/" => text(
            200,
            "meshproxy admin: /stats /clusters /config_dump /ready\n".into(),
            "text/plain",
        ),
        _ => text(
            404,
            "not found: try /stats /clusters /config_dump /ready\n".into(),
            "text/plain",
        ),
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One metric family of the Prometheus text exposition: its `# HELP` and
/// `# TYPE` lines, then all its samples together.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: String,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind,
            help,
            samples: String::new(),
        }
    }

    /// A sample with `labels` (already `k="v"` pairs, or empty).
    fn sample(&mut self, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.samples, "{} {value}", self.name);
        } else {
            let _ = writeln!(self.samples, "{}{{{labels}}} {value}", self.name);
        }
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        out.push_str(&self.samples);
    }
}

/// Prometheus text exposition (format 0.0.4): downstream responses by
/// status and flags, upstream attempts per endpoint, breaker and outlier
/// counters per cluster; every family typed and documented, its samples
/// together.
fn stats(sh: &Shared) -> String {
    let mut downstream = Family::new(
        "meshproxy_downstream_rq_total",
        "counter",
        "Responses to clients, by listener, status and Envoy response flags.",
    );
    let mut downstream_active = Family::new(
        "meshproxy_downstream_rq_active",
        "gauge",
        "Client requests in flight.",
    );
    let mut reloads = Family::new(
        "meshproxy_config_reloads_total",
        "counter",
        "Config reloads, applied (ok) or refused.",
    );
    let mut generations = Family::new(
        "meshproxy_config_generations",
        "gauge",
        "Config generations whose routing a listener's engine keeps: the one in force and those requests still hold.",
    );
    let mut upstream = Family::new(
        "meshproxy_upstream_rq_total",
        "counter",
        "Upstream attempts by endpoint and result class (1xx-5xx, or failed: no response).",
    );
    let mut upstream_active = Family::new(
        "meshproxy_upstream_rq_active",
        "gauge",
        "Upstream attempts in flight, by endpoint.",
    );
    let mut ejected = Family::new(
        "meshproxy_upstream_ejected",
        "gauge",
        "1 when outlier detection has ejected the endpoint.",
    );
    let mut cx = Family::new(
        "meshproxy_upstream_cx_total",
        "counter",
        "Upstream connections opened, by endpoint.",
    );
    let mut cx_fail = Family::new(
        "meshproxy_upstream_cx_connect_fail_total",
        "counter",
        "Upstream connection attempts that failed, by endpoint.",
    );
    let mut retries = Family::new(
        "meshproxy_upstream_rq_retry_total",
        "counter",
        "Retries made, by listener.",
    );
    let mut overflow = Family::new(
        "meshproxy_upstream_rq_overflow_total",
        "counter",
        "Requests refused by a circuit breaker (UO), by listener.",
    );
    let mut ejections = Family::new(
        "meshproxy_outlier_ejections_total",
        "counter",
        "Outlier ejections, by listener.",
    );
    let mut returns = Family::new(
        "meshproxy_outlier_returns_total",
        "counter",
        "Ejected endpoints returned to the load balancer, by listener.",
    );
    let mut cx_active = Family::new(
        "meshproxy_cluster_cx_active",
        "gauge",
        "Open upstream connections, by cluster.",
    );
    let mut rq_pending = Family::new(
        "meshproxy_cluster_rq_pending",
        "gauge",
        "Requests waiting for a connection, by cluster.",
    );
    let mut rq_active = Family::new(
        "meshproxy_cluster_rq_active",
        "gauge",
        "Requests attached to upstream connections, by cluster.",
    );
    let mut pending_overflow = Family::new(
        "meshproxy_cluster_rq_pending_overflow_total",
        "counter",
        "Requests refused by maxPendingRequests or maxRequests (Envoy's upstream_rq_pending_overflow), by cluster.",
    );
    let mut retry = Family::new(
        "meshproxy_cluster_upstream_rq_retry_total",
        "counter",
        "Retries decided, by cluster (Envoy's upstream_rq_retry).",
    );
    let mut retry_success = Family::new(
        "meshproxy_cluster_upstream_rq_retry_success_total",
        "counter",
        "Retried requests that then got an answer the policy keeps, by cluster (Envoy's upstream_rq_retry_success).",
    );
    let mut retry_exceeded = Family::new(
        "meshproxy_cluster_upstream_rq_retry_limit_exceeded_total",
        "counter",
        "Requests whose retries ran out (URX), by cluster (Envoy's upstream_rq_retry_limit_exceeded).",
    );
    let mut retry_abandoned = Family::new(
        "meshproxy_cluster_retry_or_shadow_abandoned_total",
        "counter",
        "Requests not retried because their body outgrew --buffer-limit and streamed (Envoy's retry_or_shadow_abandoned).",
    );
    let mut panic = Family::new(
        "meshproxy_cluster_lb_healthy_panic_total",
        "counter",
        "Hosts picked while the cluster was in panic, health ignored, by cluster (Envoy's lb_healthy_panic).",
    );
    let mut retry_overflow = Family::new(
        "meshproxy_cluster_rq_retry_overflow_total",
        "counter",
        "Retries refused by maxRetries (Envoy's upstream_rq_retry_overflow), by cluster.",
    );
    let mut enforced = Family::new(
        "meshproxy_cluster_outlier_ejections_enforced_total",
        "counter",
        "Outlier ejections that happened, by cluster and reason (Envoy's ejections_enforced_*).",
    );
    let mut active = Family::new(
        "meshproxy_cluster_outlier_ejections_active",
        "gauge",
        "Endpoints ejected now, by cluster (Envoy's ejections_active).",
    );
    let mut ej_overflow = Family::new(
        "meshproxy_cluster_outlier_ejections_overflow_total",
        "counter",
        "Ejections refused by maxEjectionPercent, by cluster (Envoy's ejections_overflow).",
    );
    downstream_active.sample("", sh.in_flight.load(Ordering::Relaxed));
    let mut cx_worker = Family::new(
        "meshproxy_downstream_cx_active",
        "gauge",
        "Client connections open, by worker thread.",
    );
    let mut cx_worker_total = Family::new(
        "meshproxy_downstream_cx_total",
        "counter",
        "Client connections accepted, by the worker thread they were given to.",
    );
    for (w, c) in sh.connections.iter().enumerate() {
        let l = format!("worker=\"{w}\"");
        cx_worker.sample(&l, c.active.load(Ordering::Relaxed));
        cx_worker_total.sample(&l, c.total.load(Ordering::Relaxed));
    }
    reloads.sample("result=\"ok\"", sh.reloads_ok.load(Ordering::Relaxed));
    reloads.sample(
        "result=\"refused\"",
        sh.reloads_failed.load(Ordering::Relaxed),
    );
    for p in &sh.proxies {
        let p = lock(p);
        let l = p.listener.address;
        generations.sample(
            &format!("listener=\"{l}\""),
            p.engine.retained_generations(),
        );
        for (status, by_flags) in &p.stats.responses {
            // In the order of the flags' text, whatever the map's.
            let mut rows: Vec<(String, u64)> =
                by_flags.iter().map(|(f, n)| (f.to_string(), *n)).collect();
            rows.sort_unstable();
            for (flags, n) in rows {
                let flags = if flags.is_empty() { "-" } else { &flags };
                downstream.sample(
                    &format!(
                        "listener=\"{l}\",status=\"{status}\",flags=\"{}\"",
                        label(flags)
                    ),
                    n,
                );
            }
        }
        let ll = format!("listener=\"{l}\"");
        retries.sample(&ll, p.stats.retries);
        overflow.sample(&ll, p.stats.overflow);
        ejections.sample(&ll, p.stats.ejections);
        returns.sample(&ll, p.stats.returns);
        for c in 0..p.engine.cluster_count() {
            let id = ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            let name = label(p.engine.cluster_name(id));
            let cl = format!("listener=\"{l}\",cluster=\"{name}\"");
            let b = p.engine.breaker_stats(id);
            cx_active.sample(&cl, b.connections);
            rq_pending.sample(&cl, b.pending_requests);
            rq_active.sample(&cl, b.active_requests);
            pending_overflow.sample(&cl, b.rq_pending_overflow);
            retry_overflow.sample(&cl, b.rq_retry_overflow);
            let s = p.engine.cluster_stats(id);
            retry.sample(&cl, s.upstream_rq_retry);
            retry_success.sample(&cl, s.upstream_rq_retry_success);
            retry_exceeded.sample(&cl, s.upstream_rq_retry_limit_exceeded);
            retry_abandoned.sample(&cl, s.retry_or_shadow_abandoned);
            panic.sample(&cl, s.lb_healthy_panic);
            if let Some(o) = p.engine.outlier_stats(id) {
                for reason in [
                    mesh_engine::EjectReason::Consecutive5xx,
                    mesh_engine::EjectReason::ConsecutiveGatewayFailure,
                    mesh_engine::EjectReason::ConsecutiveLocalOriginFailure,
                ] {
                    enforced.sample(
                        &format!("{cl},reason=\"{}\"", reason.as_str()),
                        o.ejections_enforced[reason as usize],
                    );
                }
                active.sample(&cl, o.ejections_active);
                ej_overflow.sample(&cl, o.ejections_overflow);
            }
            for e in 0..p.engine.endpoint_count(id) {
                let up = p.engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                let addr = label(p.engine.endpoint_address(up));
                let el = format!("{cl},endpoint=\"{addr}\"");
                let s = p.endpoint_stats(up);
                for (class, n) in s.rq_class.iter().enumerate() {
                    let class = if class == 0 {
                        "failed".to_owned()
                    } else {
                        format!("{class}xx")
                    };
                    upstream.sample(&format!("{el},class=\"{class}\""), n);
                }
                upstream_active.sample(&el, p.engine.active_requests(up));
                ejected.sample(&el, u8::from(p.engine.ejection(up).is_some()));
                cx.sample(&el, s.cx_total);
                cx_fail.sample(&el, s.cx_connect_fail);
            }
        }
    }
    let mut out = String::new();
    for f in [
        &downstream,
        &downstream_active,
        &cx_worker,
        &cx_worker_total,
        &reloads,
        &generations,
        &upstream,
        &upstream_active,
        &ejected,
        &cx,
        &cx_fail,
        &retries,
        &overflow,
        &ejections,
        &returns,
        &cx_active,
        &rq_pending,
        &rq_active,
        &pending_overflow,
        &retry_overflow,
        &retry,
        &retry_success,
        &retry_exceeded,
        &retry_abandoned,
        &panic,
        &enforced,
        &active,
        &ej_overflow,
    ] {
        f.write(&mut out);
    }
    out
}

/// Envoy's `/clusters` text: `cluster::endpoint::field::value`.
fn clusters(sh: &Shared) -> String {
    let mut out = String::new();
    for p in &sh.proxies {
        let p = lock(p);
        let now = sh.now();
        for c in 0..p.engine.cluster_count() {
            let id = ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            let name = p.engine.cluster_name(id);
            let b = p.engine.breaker_stats(id);
            let _ = writeln!(out, "{name}::listener::{}", p.listener.address);
            let _ = writeln!(out, "{name}::in_panic::{}", p.engine.in_panic(id));
            let _ = writeln!(out, "{name}::cx_active::{}", b.connections);
            let _ = writeln!(out, "{name}::rq_pending::{}", b.pending_requests);
            for e in 0..p.engine.endpoint_count(id) {
                let up = p.engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                let addr = p.engine.endpoint_address(up);
                let s = p.endpoint_stats(up);
                let errors = s.rq_class[0] + s.rq_class[5];
                let _ = writeln!(out, "{name}::{addr}::rq_total::{}", s.rq_total);
                let _ = writeln!(out, "{name}::{addr}::rq_error::{errors}");
                let _ = writeln!(
                    out,
                    "{name}::{addr}::rq_active::{}",
                    p.engine.active_requests(up)
                );
                match p.engine.ejection(up) {
                    Some((since, duration)) => {
                        let remaining = (since + duration).saturating_since(now);
                        let _ =
                            writeln!(out, "{name}::{addr}::health_flags::/failed_outlier_check");
                        let _ = writeln!(
                            out,
                            "{name}::{addr}::ejection_remaining_ms::{}",
                            remaining.as_millis()
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{name}::{addr}::health_flags::healthy");
                    }
                }
                let _ = writeln!(
                    out,
                    "{name}::{addr}::ejection_multiplier::{}",
                    p.engine.ejection_multiplier(up)
                );
            }
        }
    }
    out
}
