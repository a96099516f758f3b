//! A request's router state: started, each attempt's outcome judged
//! against the route's retry policy (Envoy's `retryOn`, back-off, host
//! predicates), retried, finished.

use super::*;

impl Engine {
    /// Starts the router state of a forwarded request (for retries). The
    /// state holds its route's config generation until
    /// [`Engine::finish_request`], which every started request must reach.
    #[inline]
    pub fn start_request(&mut self, forward: &Forward, now: Time) -> RequestState {
        self.pin(forward.route.generation);
        let mut s = RequestState {
            route: forward.route,
            upstream: forward.upstream,
            started: now,
            retries: 0,
            worker: forward.worker,
            destination: forward.destination,
            hash: forward.hash,
            tried: [0; MAX_TRACKED_HOSTS],
            tried_len: 0,
            retry_in_flight: false,
            pinned: true,
        };
        s.remember(forward.upstream.host_uid);
        s
    }

    /// Decides whether to retry after an attempt ended with `outcome`
    /// (call after [`Engine::handle_response`] for **every** attempt,
    /// successes included: a retry holds its `maxRetries` slot until the
    /// next decision, as Envoy's `shouldRetry` releases it; an overflow is
    /// never retried). A request that ends without a later decision (its
    /// retry overflowed or found no host, or the route timeout fired during
    /// the back-off) calls [`Engine::finish_request`]. Envoy's semantics
    /// (reference §5.6).
    pub fn retry_decision(
        &mut self,
        state: &mut RequestState,
        outcome: Outcome,
        now: Time,
    ) -> RetryDecision {
        self.guard.observe(now);
        let Some(c) = self.cluster_of(state.upstream) else {
            return RetryDecision::Done { flag: None };
        };
        if state.retry_in_flight {
            state.retry_in_flight = false;
            self.clusters[c].breaker.finish_retry();
        }
        let Some(routing) = routing_of(&self.routing, &self.retired, state.route) else {
            return RetryDecision::Done { flag: None };
        };
        let route = routing.compiled.table.route(state.route);
        let Some(policy) = &route.retries else {
            return RetryDecision::Done { flag: None };
        };
        let on = policy.retry_on;
        let retriable = match outcome {
            Outcome::Status(s) => {
                (on.contains(RetryOn::FIVE_XX) && (500..=599).contains(&s))
                    || (on.contains(RetryOn::GATEWAY_ERROR) && (502..=504).contains(&s))
                    || (on.contains(RetryOn::RETRIABLE_4XX) && s == 409)
                    // (Istio's default sets the flag with no codes: skip the search.)
                    || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                        && !policy.retriable_status_codes.is_empty()
                        && policy.retriable_status_codes.contains(&s))
            }
            Outcome::ConnectFailure => {
                on.0 & (RetryOn::FIVE_XX
                    | RetryOn::GATEWAY_ERROR
                    | RetryOn::RESET
                    | RetryOn::CONNECT_FAILURE)
                    != 0
            }
            Outcome::Reset(_) | Outcome::Timeout => {
                on.0 & (RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET) != 0
            }
        };
        let cluster = &mut self.clusters[c];
        if !retriable {
            cluster.stats.upstream_rq_retry_success += u64::from(state.retries > 0);
            return RetryDecision::Done { flag: None };
        }
        let d = retry_retriable(
            route,
            policy,
            state,
            &mut cluster.breaker,
            &mut self.rng_retry,
            now,
        );
        match d {
            RetryDecision::Retry { .. } => cluster.stats.upstream_rq_retry += 1,
            RetryDecision::Done {
                flag: Some(ResponseFlag::UpstreamRetryLimitExceeded),
            } => cluster.stats.upstream_rq_retry_limit_exceeded += 1,
            RetryDecision::Done { .. } => {}
        }
        d
    }

    /// A request's body outgrew the buffer kept to resend it (Envoy's
    /// retry and shadow buffer limit): it will not be retried. Counts
    /// `retry_or_shadow_abandoned` on its cluster.
    pub fn abandon_retries(&mut self, state: &RequestState, now: Time) {
        self.guard.observe(now);
        if let Some(c) = self.cluster_of(state.upstream) {
            self.clusters[c].stats.retry_or_shadow_abandoned += 1;
        }
    }

    /// Ends a request's router state: releases the `maxRetries` slot of a
    /// retry that will not report to [`Engine::retry_decision`] (Envoy
    /// frees it when the retry state is destroyed), and the route's config
    /// generation. Every started request calls it once it ends. Idempotent.
    #[inline]
    pub fn finish_request(&mut self, state: &mut RequestState, now: Time) {
        self.guard.observe(now);
        if state.pinned {
            state.pinned = false;
            self.unpin(state.route.generation);
        }
        if !state.retry_in_flight {
            return;
        }
        state.retry_in_flight = false;
        if let Some(c) = self.cluster_of(state.upstream) {
            self.clusters[c].breaker.finish_retry();
        }
    }

    /// Picks the host of a retry in the same cluster, avoiding hosts
    /// already tried when the route's policy says so (Envoy's
    /// `previous_hosts` predicate with `host_selection_retry_max_attempts`).
    /// Returns a [`Decision::Forward`] to admit like the first attempt, or a
    /// [`Decision::Reject`] (`UH`) when the cluster has no candidate.
    pub fn retry(&mut self, state: &mut RequestState, now: Time) -> Decision {
        self.guard.observe(now);
        let route_id = state.route;
        let no_host = Decision::Reject(Reject {
            reason: RejectReason::NoHealthyUpstream,
            status: 503,
            route: Some(route_id),
            delay: None,
        });
        let Some((c, _)) = self.locate(state.upstream) else {
            return no_host;
        };
        let route = routing_of(&self.routing, &self.retired, route_id)
            .map(|r| r.compiled.table.route(route_id));
        let (avoid, max_attempts) = match route.and_then(|r| r.retries.as_ref()) {
            Some(p) => (p.previous_hosts, p.host_selection_retry_max_attempts),
            None => (false, 0),
        };
        let timeout = route.and_then(|r| r.timeout);
        if state.upstream.generation != self.generation {
            // After a push, forget the tried hosts that left.
            let mut kept = 0;
            for i in 0..usize::from(state.tried_len) {
                if self.host_uids.contains_key(&state.tried[i]) {
                    state.tried[kept] = state.tried[i];
                    kept += 1;
                }
            }
            state.tried_len = u8::try_from(kept).unwrap_or(0);
        }
        let cluster = &mut self.clusters[c];
        let worker = state.worker as usize;
        let hash = match state.hash {
            Some(h) => h,
            None if cluster.balancer.is_hash_based() => self.rng_hash.next_u64(),
            None => 0,
        };
        let mut picked = None;
        // Envoy's `chooseHost` loop: the hash-based balancers offset by the
        // re-pick index of this selection (0 first), not by the retry
        // count, so without the predicate a retry hashes to the same host.
        for attempt in 0..=max_attempts {
            let p = cluster.pick(worker, hash, attempt, &mut self.rng_lb);
            picked = p;
            // Envoy counts each pick made in panic, re-picks included.
            cluster.stats.lb_healthy_panic += u64::from(cluster.in_panic && p.is_some());
            match p {
                Some(e) if avoid && state.tried(cluster.host_uids[e as usize]) => continue,
                _ => break,
            }
        }
        let Some(endpoint) = picked else {
            return no_host;
        };
        cluster.hosts[endpoint as usize].active_requests += 1;
        let host_uid = cluster.host_uids[endpoint as usize];
        state.remember(host_uid);
        state.upstream = Upstream {
            cluster: ClusterId(u32::try_from(c).unwrap_or(u32::MAX)),
            endpoint: EndpointId(endpoint),
            generation: self.generation,
            cluster_uid: cluster.uid,
            host_uid,
        };
        Decision::Forward(Forward {
            route: route_id,
            upstream: state.upstream,
            destination: state.destination,
            delay: None,
            timeout,
            hash: state.hash,
            set_cookie: None,
            worker: state.worker,
        })
    }
}

/// The rest of [`Engine::retry_decision`] once the outcome is retriable:
/// the route timeout, `numRetries`, the cluster's `maxRetries` and the
/// back-off. Out of line, so that the common answer (not retriable) costs
/// little.
#[inline(never)]
pub(super) fn retry_retriable(
    route: &HttpRoute,
    policy: &RetryPolicy,
    state: &mut RequestState,
    breaker: &mut Breaker,
    rng: &mut Stream,
    now: Time,
) -> RetryDecision {
    if let Some(t) = route.timeout
        && now >= state.started + t
    {
        return RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamRequestTimeout),
        };
    }
    if state.retries >= policy.num_retries {
        return RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamRetryLimitExceeded),
        };
    }
    if !breaker.start_retry() {
        return RetryDecision::Done {
            flag: Some(ResponseFlag::UpstreamOverflow),
        };
    }
    state.retry_in_flight = true;
    state.retries += 1;
    // Envoy's `JitteredExponentialBackOffStrategy` (the code, not the
    // docs' `(2^k − 1) × base`): retry k waits uniformly in
    // [0, interval_k) ms with interval_1 = base and interval_{k+1} =
    // 2 × interval_k while that stays under max / 2, else max. With the
    // 25 ms default: [0,25), [0,50), [0,100), [0,200), then [0,250).
    let base = u64::try_from(policy.backoff_base.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let max = u64::try_from(policy.backoff_max.as_millis())
        .unwrap_or(u64::MAX)
        .max(base);
    let mut ceiling = base;
    for _ in 1..state.retries {
        ceiling = if ceiling < max / 2 { ceiling * 2 } else { max };
    }
    let backoff = Duration::from_millis(rng.modulo(ceiling));
    RetryDecision::Retry { backoff }
}
