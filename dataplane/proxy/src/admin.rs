//! The admin listener (loopback by default): `/stats` (Prometheus text),
//! `/clusters` (endpoint health and ejection state, Envoy's format),
//! `/config_dump` (the config in force) and `/ready`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use mesh_engine::ClusterId;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Shared;

pub(crate) async fn serve(sh: Rc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
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
            if sh.ready.get() {
                text(200, "LIVE\n".into(), "text/plain")
            } else {
                text(503, "DRAINING\n".into(), "text/plain")
            }
        }
        "/stats" | "/stats/prometheus" => text(200, stats(sh), "text/plain; version=0.0.4"),
        "/clusters" => text(200, clusters(sh), "text/plain"),
        "/config_dump" => text(200, sh.config_text.borrow().clone(), "application/toml"),
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

/// Prometheus text: downstream responses by status and flags, upstream
/// attempts per endpoint, breaker and outlier counters per cluster.
fn stats(sh: &Shared) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE meshproxy_downstream_rq_total counter");
    for p in &sh.proxies {
        let p = p.borrow();
        let l = p.listener.address;
        for (status, flags, n) in p
            .stats
            .responses
            .iter()
            .flat_map(|(s, m)| m.iter().map(move |(f, n)| (s, f, n)))
        {
            let flags = if flags.is_empty() { "-" } else { flags };
            let _ = writeln!(
                out,
                "meshproxy_downstream_rq_total{{listener=\"{l}\",status=\"{status}\",flags=\"{}\"}} {n}",
                label(flags)
            );
        }
    }
    let _ = writeln!(out, "# TYPE meshproxy_downstream_rq_active gauge");
    let _ = writeln!(out, "meshproxy_downstream_rq_active {}", sh.in_flight.get());
    let _ = writeln!(out, "# TYPE meshproxy_config_reloads_total counter");
    let _ = writeln!(
        out,
        "meshproxy_config_reloads_total{{result=\"ok\"}} {}\nmeshproxy_config_reloads_total{{result=\"refused\"}} {}",
        sh.reloads_ok.get(),
        sh.reloads_failed.get()
    );
    let _ = writeln!(out, "# TYPE meshproxy_upstream_rq_total counter");
    let mut gauges = String::new();
    let mut cluster_lines = String::new();
    for p in &sh.proxies {
        let p = p.borrow();
        let l = p.listener.address;
        let _ = writeln!(
            cluster_lines,
            "meshproxy_upstream_rq_retry_total{{listener=\"{l}\"}} {}\nmeshproxy_upstream_rq_overflow_total{{listener=\"{l}\"}} {}\nmeshproxy_outlier_ejections_total{{listener=\"{l}\"}} {}\nmeshproxy_outlier_returns_total{{listener=\"{l}\"}} {}",
            p.stats.retries, p.stats.overflow, p.stats.ejections, p.stats.returns
        );
        for c in 0..p.engine.cluster_count() {
            let id = ClusterId(u32::try_from(c).unwrap_or(u32::MAX));
            let name = label(p.engine.cluster_name(id));
            let b = p.engine.breaker_stats(id);
            let _ = writeln!(
                cluster_lines,
                "meshproxy_cluster_cx_active{{listener=\"{l}\",cluster=\"{name}\"}} {}\nmeshproxy_cluster_rq_pending{{listener=\"{l}\",cluster=\"{name}\"}} {}\nmeshproxy_cluster_rq_active{{listener=\"{l}\",cluster=\"{name}\"}} {}\nmeshproxy_cluster_rq_pending_overflow_total{{listener=\"{l}\",cluster=\"{name}\"}} {}\nmeshproxy_cluster_rq_retry_overflow_total{{listener=\"{l}\",cluster=\"{name}\"}} {}",
                b.connections,
                b.pending_requests,
                b.active_requests,
                b.rq_pending_overflow,
                b.rq_retry_overflow
            );
            if let Some(o) = p.engine.outlier_stats(id) {
                let _ = writeln!(
                    cluster_lines,
                    "meshproxy_cluster_outlier_ejections_enforced_total{{listener=\"{l}\",cluster=\"{name}\"}} {}\nmeshproxy_cluster_outlier_ejections_overflow_total{{listener=\"{l}\",cluster=\"{name}\"}} {}",
                    o.ejections_enforced_total, o.ejections_overflow
                );
            }
            for e in 0..p.engine.endpoint_count(id) {
                let up = p.engine.upstream(id, u32::try_from(e).unwrap_or(u32::MAX));
                let addr = label(p.engine.endpoint_address(up));
                let s = p.endpoint_stats(up);
                for (class, n) in s.rq_class.iter().enumerate() {
                    let class = if class == 0 {
                        "failed".to_owned()
                    } else {
                        format!("{class}xx")
                    };
                    let _ = writeln!(
                        out,
                        "meshproxy_upstream_rq_total{{listener=\"{l}\",cluster=\"{name}\",endpoint=\"{addr}\",class=\"{class}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    gauges,
                    "meshproxy_upstream_rq_active{{listener=\"{l}\",cluster=\"{name}\",endpoint=\"{addr}\"}} {}\nmeshproxy_upstream_ejected{{listener=\"{l}\",cluster=\"{name}\",endpoint=\"{addr}\"}} {}\nmeshproxy_upstream_cx_total{{listener=\"{l}\",cluster=\"{name}\",endpoint=\"{addr}\"}} {}\nmeshproxy_upstream_cx_connect_fail_total{{listener=\"{l}\",cluster=\"{name}\",endpoint=\"{addr}\"}} {}",
                    p.engine.active_requests(up),
                    u8::from(p.engine.ejection(up).is_some()),
                    s.cx_total,
                    s.cx_connect_fail
                );
            }
        }
    }
    out.push_str(&gauges);
    out.push_str(&cluster_lines);
    out
}

/// Envoy's `/clusters` text: `cluster::endpoint::field::value`.
fn clusters(sh: &Shared) -> String {
    let mut out = String::new();
    for p in &sh.proxies {
        let p = p.borrow();
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
