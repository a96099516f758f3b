//! Outlier detection, as Envoy does it when Istio configures it (reference
//! §2): a per-host monitor of consecutive failures and a per-cluster detector
//! that ejects, returns on interval ticks, and decays the ejection multiplier.
//!
//! Timing is Envoy's, exactly:
//! - a consecutive-failure detector fires **when the N-th failing result is
//!   reported** (the counter *equals* the threshold), not at the next tick;
//! - an ejected host returns only on an interval tick, the first one at which
//!   `min(base × multiplier, max) ≤ now − ejected_at`;
//! - ticks fall at `created + k × interval`;
//! - on each tick, after returns, every host that is not ejected and was
//!   returned at least one full interval ago has its multiplier decreased.
//!
//! Istio never sets `max_ejection_time_jitter`, so there is no jitter. Istio
//! forces `enforcing_success_rate` to 0 and leaves failure-percentage
//! enforcement at Envoy's 0, so the statistical detectors never eject under
//! Istio; they are not modelled (their "detected" counters would be the only
//! visible effect).

use std::time::Duration;

use crate::config::OutlierPolicy;
use crate::decision::{EjectReason, Outcome};
use crate::rng::Stream;
use crate::time::Time;

/// Which rule limits ejections by `maxEjectionPercent`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxEjectionRule {
    /// Envoy ≥ 1.28 (Istio ≥ 1.20): eject only if `100 × (ejected + 1) /
    /// hosts ≤ maxEjectionPercent`, so with the default 10 % a cluster of
    /// fewer than 10 hosts never ejects.
    #[default]
    Strict,
    /// Compatibility mode for Envoy ≤ 1.26: eject if `100 × ejected / hosts <
    /// maxEjectionPercent`, so the first ejection is always allowed and the
    /// limit can be overshot.
    LegacyEnvoy126,
}

/// Per-host state (Envoy's `DetectorHostMonitorImpl`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostMonitor {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    pub(crate) ejected: bool,
    /// The ejection-time multiplier; 0 until the first ejection.
    multiplier: u32,
    ejected_at: Option<Time>,
    returned_at: Option<Time>,
    pub(crate) ejections: u32,
}

/// Counters of one cluster's detector (Envoy's `outlier_detection.*` stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutlierStats {
    /// Ejections that happened.
    pub ejections_enforced_total: u64,
    /// Ejections that happened, by reason (Envoy's
    /// `ejections_enforced_consecutive_5xx`, `…_gateway_failure`,
    /// `…_local_origin_failure`), indexed as [`EjectReason`].
    pub ejections_enforced: [u64; 3],
    /// Hosts ejected now (Envoy's `ejections_active` gauge).
    pub ejections_active: u32,
    /// Ejections refused by `maxEjectionPercent`.
    pub ejections_overflow: u64,
    /// Detector firings by reason: 5xx, gateway, local origin.
    pub ejections_detected: [u64; 3],
    /// Firings that were detected but not enforced (enforcement percentage).
    pub ejections_detected_not_enforced: u64,
}

/// What a report or a tick changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Ejected {
        host: u32,
        reason: EjectReason,
        duration: Duration,
    },
    Returned {
        host: u32,
    },
}

/// One cluster's detector (Envoy's `DetectorImpl`).
#[derive(Clone, Debug)]
pub(crate) struct Detector {
    pub(crate) policy: OutlierPolicy,
    pub(crate) rule: MaxEjectionRule,
    pub(crate) hosts: Vec<HostMonitor>,
    pub(crate) ejected: u32,
    pub(crate) next_tick: Time,
    pub(crate) stats: OutlierStats,
}

impl Detector {
    /// A detector created at `now` (its first tick is `now + interval`).
    pub(crate) fn new(
        policy: OutlierPolicy,
        rule: MaxEjectionRule,
        hosts: usize,
        now: Time,
    ) -> Self {
        Self {
            policy,
            rule,
            hosts: vec![HostMonitor::default(); hosts],
            ejected: 0,
            next_tick: now + policy.interval,
            stats: OutlierStats::default(),
        }
    }

    /// Reports one attempt's outcome for `host`; returns an ejection if a
    /// detector fired and the host was ejected.
    pub(crate) fn report(
        &mut self,
        host: u32,
        outcome: Outcome,
        now: Time,
        rng: &mut Stream,
    ) -> Option<Change> {
        let split = self.policy.split_external_local_origin_errors;
        let code = match outcome {
            Outcome::Status(code) => {
                if split {
                    // The pool was ready: a local-origin connect success.
                    self.hosts[host as usize].consecutive_local = 0;
                }
                code
            }
            Outcome::ConnectFailure | Outcome::Reset(_) | Outcome::Timeout if split => {
                if outcome != Outcome::ConnectFailure {
                    // The connection was established before the reset or
                    // timeout: connect success first, then the failure.
                    self.hosts[host as usize].consecutive_local = 0;
                }
                let m = &mut self.hosts[host as usize];
                m.consecutive_local += 1;
                if m.consecutive_local == self.policy.consecutive_local_origin_failure {
                    return self.fire(host, EjectReason::ConsecutiveLocalOriginFailure, now, rng);
                }
                return None;
            }
            // Non-split mode: a reset or connect failure counts as 503, a
            // timeout as 504 (reference §2.1).
            Outcome::ConnectFailure | Outcome::Reset(_) => 503,
            Outcome::Timeout => 504,
        };
        let m = &mut self.hosts[host as usize];
        if !(500..=599).contains(&code) {
            m.consecutive_5xx = 0;
            m.consecutive_gateway = 0;
            return None;
        }
        let mut change = None;
        if matches!(code, 502..=504) {
            m.consecutive_gateway += 1;
            if m.consecutive_gateway == self.policy.consecutive_gateway_failure {
                change = self.fire(host, EjectReason::ConsecutiveGatewayFailure, now, rng);
            }
        } else {
            m.consecutive_gateway = 0;
        }
        let m = &mut self.hosts[host as usize];
        m.consecutive_5xx += 1;
        if m.consecutive_5xx == self.policy.consecutive_5xx {
            change = change.or(self.fire(host, EjectReason::Consecutive5xx, now, rng));
        }
        change
    }

    /// Envoy's `onConsecutiveErrorWorker` + `ejectHost`.
    fn fire(
        &mut self,
        host: u32,
        reason: EjectReason,
        now: Time,
        rng: &mut Stream,
    ) -> Option<Change> {
        if self.hosts[host as usize].ejected {
            // Already ejected: nothing, and the counter is not reset.
            return None;
        }
        self.stats.ejections_detected[reason as usize] += 1;
        let result = self.eject(host, reason, now, rng);
        let m = &mut self.hosts[host as usize];
        match reason {
            EjectReason::Consecutive5xx => m.consecutive_5xx = 0,
            EjectReason::ConsecutiveGatewayFailure => m.consecutive_gateway = 0,
            EjectReason::ConsecutiveLocalOriginFailure => m.consecutive_local = 0,
        }
        result
    }

    fn eject(
        &mut self,
        host: u32,
        reason: EjectReason,
        now: Time,
        rng: &mut Stream,
    ) -> Option<Change> {
        let total = self.hosts.len() as u64;
        let active = u64::from(self.ejected);
        let mep = u64::from(self.policy.max_ejection_percent.min(100));
        let allowed = match self.rule {
            MaxEjectionRule::Strict => 100 * (active + 1) <= mep * total,
            MaxEjectionRule::LegacyEnvoy126 => 100 * active < mep * total,
        };
        if !allowed {
            self.stats.ejections_overflow += 1;
            return None;
        }
        let enforcing = match reason {
            EjectReason::Consecutive5xx => self.policy.enforcing_consecutive_5xx,
            EjectReason::ConsecutiveGatewayFailure => {
                self.policy.enforcing_consecutive_gateway_failure
            }
            EjectReason::ConsecutiveLocalOriginFailure => {
                self.policy.enforcing_consecutive_local_origin_failure
            }
        };
        // Envoy: a random value modulo 100 below the percentage is a hit;
        // 0 and 100 need no draw.
        let enforced = match enforcing {
            0 => false,
            100.. => true,
            p => rng.modulo(100) < u64::from(p),
        };
        if !enforced {
            self.stats.ejections_detected_not_enforced += 1;
            return None;
        }
        let base = self.policy.base_ejection_time;
        let max = self.policy.max_ejection_time;
        let m = &mut self.hosts[host as usize];
        m.ejected = true;
        m.ejections += 1;
        m.ejected_at = Some(now);
        if base * m.multiplier < max + base {
            m.multiplier += 1;
        }
        let duration = (base * m.multiplier).min(max);
        self.ejected += 1;
        self.stats.ejections_enforced_total += 1;
        self.stats.ejections_enforced[reason as usize] += 1;
        Some(Change::Ejected {
            host,
            reason,
            duration,
        })
    }

    /// Runs every tick due at or before `now`, pushing what changed.
    pub(crate) fn handle_timeout(&mut self, now: Time, changes: &mut impl FnMut(Change)) {
        while self.next_tick <= now {
            let tick = self.next_tick;
            self.tick(tick, changes);
            self.next_tick = tick + self.policy.interval;
        }
    }

    /// Envoy's `onIntervalTimer` at time `t`.
    fn tick(&mut self, t: Time, changes: &mut impl FnMut(Change)) {
        let base = self.policy.base_ejection_time;
        let max = self.policy.max_ejection_time;
        for (i, m) in self.hosts.iter_mut().enumerate() {
            if !m.ejected {
                continue;
            }
            let ejected_at = m.ejected_at.unwrap_or(t);
            if (base * m.multiplier).min(max) <= t - ejected_at {
                m.ejected = false;
                m.consecutive_5xx = 0;
                m.consecutive_gateway = 0;
                m.consecutive_local = 0;
                m.returned_at = Some(t);
                self.ejected -= 1;
                changes(Change::Returned {
                    host: u32::try_from(i).unwrap_or(u32::MAX),
                });
            }
        }
        let interval = self.policy.interval;
        for m in &mut self.hosts {
            if !m.ejected
                && let Some(r) = m.returned_at
                && t - r >= interval
                && m.multiplier > 0
            {
                m.multiplier -= 1;
            }
        }
    }

    /// Whether `host` is ejected.
    pub(crate) fn is_ejected(&self, host: u32) -> bool {
        self.hosts.get(host as usize).is_some_and(|m| m.ejected)
    }

    /// Carries the state of hosts that still exist from `prev` (matched by
    /// the index pairs in `same`), as a reconfiguration must.
    pub(crate) fn carry(&mut self, prev: &Self, same: impl Iterator<Item = (usize, usize)>) {
        for (new, old) in same {
            self.hosts[new] = prev.hosts[old].clone();
        }
        self.ejected =
            u32::try_from(self.hosts.iter().filter(|m| m.ejected).count()).unwrap_or(u32::MAX);
        self.stats = prev.stats;
        if self.policy.interval == prev.policy.interval {
            self.next_tick = prev.next_tick;
        }
    }

    /// Ejection multiplier of a host (for tests and `/clusters`).
    pub(crate) fn multiplier(&self, host: u32) -> u32 {
        self.hosts[host as usize].multiplier
    }

    /// When the host was ejected and for how long, if it is.
    pub(crate) fn ejection(&self, host: u32) -> Option<(Time, Duration)> {
        let m = &self.hosts[host as usize];
        if !m.ejected {
            return None;
        }
        let d = (self.policy.base_ejection_time * m.multiplier).min(self.policy.max_ejection_time);
        Some((m.ejected_at?, d))
    }
}
