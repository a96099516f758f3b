//! The `events.csv` vocabulary of the engine's events — their kinds and
//! details — and the per-window tally of overflows, for both writers (the
//! simulator and meshproxy's recorder).

use std::time::Duration;

use mesh_engine::EngineEvent;
use mesh_engine::config::format_duration;

/// The `kind` of an engine event: `eject`, `return`, `overflow`,
/// `panic_start`, `panic_end`, `config_applied`.
pub fn engine_event_kind(ev: &EngineEvent) -> &'static str {
    match ev {
        EngineEvent::Ejected { .. } => "eject",
        EngineEvent::Returned { .. } => "return",
        EngineEvent::Overflow { .. } => "overflow",
        EngineEvent::Panic { in_panic: true, .. } => "panic_start",
        EngineEvent::Panic {
            in_panic: false, ..
        } => "panic_end",
        EngineEvent::ConfigApplied { .. } => "config_applied",
    }
}

/// The `detail` of an engine event, `key=value` pairs: an ejection's
/// detector and duration (`reason=consecutive_5xx duration=30s`), a
/// config's size (`clusters=3 routes=5`), empty for the others.
pub fn engine_event_detail(ev: &EngineEvent) -> String {
    match ev {
        EngineEvent::Ejected {
            reason, duration, ..
        } => format!(
            "reason={} duration={}",
            reason.as_str(),
            format_duration(*duration)
        ),
        EngineEvent::ConfigApplied { clusters, routes } => {
            format!("clusters={clusters} routes={routes}")
        }
        EngineEvent::Returned { .. } | EngineEvent::Overflow { .. } | EngineEvent::Panic { .. } => {
            String::new()
        }
    }
}

/// The overflows of one window, one `overflow` event per (proxy, cluster)
/// at the first one's time: a breaker refusing thousands of requests logs
/// one line per window, not one per request.
#[derive(Clone, Debug, Default)]
pub struct Overflows(Vec<(String, String, u64, u64)>);

impl Overflows {
    /// An overflow at `time_ns` in `proxy` for `cluster`.
    pub fn add(&mut self, time_ns: u64, proxy: &str, cluster: &str) {
        match self.0.iter_mut().find(|e| e.0 == proxy && e.1 == cluster) {
            Some(e) => e.3 += 1,
            None => self
                .0
                .push((proxy.to_owned(), cluster.to_owned(), time_ns, 1)),
        }
    }

    /// No overflow in this window.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The window's events, ordered by proxy then cluster: (time in
    /// nanoseconds, proxy, cluster, detail `count=N window=W`). Starts the
    /// next window.
    pub fn take(&mut self, window: Duration) -> Vec<(u64, String, String, String)> {
        let mut all = std::mem::take(&mut self.0);
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all.into_iter()
            .map(|(proxy, cluster, first, count)| {
                let detail = format!("count={count} window={}", format_duration(window));
                (first, proxy, cluster, detail)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflows_are_one_event_per_proxy_and_cluster_at_the_first_time() {
        let mut o = Overflows::default();
        o.add(30, "b", "c1");
        o.add(10, "a", "c2");
        o.add(20, "a", "c1");
        o.add(40, "a", "c2");
        let rows = o.take(Duration::from_secs(1));
        let expected = [
            (20, "a", "c1", "count=1 window=1s"),
            (10, "a", "c2", "count=2 window=1s"),
            (30, "b", "c1", "count=1 window=1s"),
        ];
        assert_eq!(rows.len(), expected.len());
        for (r, e) in rows.iter().zip(expected) {
            assert_eq!((r.0, r.1.as_str(), r.2.as_str(), r.3.as_str()), e);
        }
        assert!(o.is_empty());
    }
}
