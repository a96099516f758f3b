//! The world's events (the timeline's faults, load changes and pushes) and
//! the engines' events, into the metrics and the event log.

use super::*;

impl<'m> Run<'m> {
    pub(super) fn timeline(&mut self, now: Time, index: usize) {
        match &self.model.timeline[index].1 {
            Action::Pod { pod, mode } => {
                self.pods[*pod].mode = *mode;
                self.metrics
                    .pod_health(now, *pod, !matches!(mode, Mode::Normal));
                let (kind, detail) = match mode {
                    Mode::Normal => ("fault_end", "recover".to_owned()),
                    Mode::Fail { status, ppm } => (
                        "fault_start",
                        format!("fail status={status} probability={}", f64::from(*ppm) / 1e6),
                    ),
                    Mode::Slow { factor } => ("fault_start", format!("slow factor={factor}")),
                    Mode::Crashed => ("fault_start", "crash".to_owned()),
                };
                self.metrics.event(EventRow {
                    time: now,
                    kind,
                    proxy: String::new(),
                    endpoint: self.model.pods[*pod].name.clone(),
                    detail,
                });
            }
            Action::Qps(q) => {
                self.qps = *q;
                self.metrics.event(EventRow {
                    time: now,
                    kind: "load_change",
                    proxy: String::new(),
                    endpoint: String::new(),
                    detail: format!("qps={q}"),
                });
            }
            Action::Push { propagation, .. } => {
                let push_index = self.model.timeline[..index]
                    .iter()
                    .filter(|(_, a)| matches!(a, Action::Push { .. }))
                    .count();
                self.metrics.event(EventRow {
                    time: now,
                    kind: "config_push",
                    proxy: String::new(),
                    endpoint: String::new(),
                    detail: format!(
                        "propagation={}",
                        mesh_engine::config::format_duration(*propagation)
                    ),
                });
                for p in 0..self.proxies.len() {
                    self.queue.push(
                        now + *propagation,
                        Class::Timer,
                        Ev::Apply {
                            proxy: u32::try_from(p).unwrap_or(0),
                            index: u32::try_from(push_index).unwrap_or(0),
                        },
                    );
                }
            }
        }
    }

    /// Moves the engine's events into the event log and counters, each at
    /// the time it happened.
    pub(super) fn drain(&mut self, p: usize) {
        while let Some((now, ev)) = self.proxies[p].engine.poll_event() {
            let engine = &self.proxies[p].engine;
            let proxy = &self.model.proxies[p].name;
            let endpoint = match &ev {
                EngineEvent::Ejected { upstream, .. } => {
                    let pod = self.pod_of(p, *upstream);
                    self.metrics.ejected(now, p, pod);
                    self.pod_name(pod, engine.endpoint_address(*upstream))
                }
                EngineEvent::Returned { upstream } => {
                    let pod = self.pod_of(p, *upstream);
                    self.metrics.returned(now, p, pod);
                    self.pod_name(pod, engine.endpoint_address(*upstream))
                }
                EngineEvent::Overflow { upstream } => {
                    // Tallied per window, not logged one by one.
                    let cluster = engine.cluster_name(upstream.cluster);
                    self.metrics.overflow(now, proxy, cluster);
                    continue;
                }
                EngineEvent::Panic { cluster, .. } => engine.cluster_name(*cluster).to_owned(),
                EngineEvent::ConfigApplied { .. } => String::new(),
            };
            self.metrics.event(EventRow {
                time: now,
                kind: mesh_rundir::engine_event_kind(&ev),
                proxy: proxy.clone(),
                endpoint,
                detail: mesh_rundir::engine_event_detail(&ev),
            });
        }
    }

    pub(super) fn pod_of(&self, p: usize, up: Upstream) -> Option<usize> {
        let addr = self.proxies[p].engine.endpoint_address(up);
        self.model.pods.iter().position(|pod| pod.address == addr)
    }

    pub(super) fn pod_name(&self, pod: Option<usize>, address: &str) -> String {
        pod.map_or_else(|| address.to_owned(), |i| self.model.pods[i].name.clone())
    }
}
