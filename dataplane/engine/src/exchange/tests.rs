//! The request protocol, one behaviour per test, times exact.

use std::time::Duration;

use super::*;
use crate::decision::ResetReason;
use crate::tests::{engine, mesh, ms, vs};
use crate::{ClusterId, EngineEvent};

/// Two hosts round robin (`pool`: more traffic policy), and a
/// VirtualService whose route has `route` (retries, timeout, fault).
fn two_hosts(route: &str, pool: &str) -> String {
    let dr = format!(
        "[destinationRule.trafficPolicy]\nloadBalancer = {{ simple = \"ROUND_ROBIN\" }}\n{pool}"
    );
    mesh(2, &dr, &vs(route))
}

fn req() -> Request<'static> {
    Request::get("svc", "/")
}

/// The upstream's address of a forward step.
fn forwarded_to(e: &Engine, step: Step) -> String {
    match step {
        Step::Forward(f) => e.endpoint_address(f.upstream).to_owned(),
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn answer(step: Step) -> Answer {
    match step {
        Step::Answer(a) => a,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn flags(a: &Answer) -> String {
    a.flags.to_string()
}

/// Nothing held: no request, retry or pending slot, one generation.
fn assert_released(e: &Engine) {
    let b = e.breaker_stats(ClusterId(0));
    assert_eq!(
        (b.active_requests, b.pending_requests, b.active_retries),
        (0, 0, 0),
        "{b:?}"
    );
    assert_eq!(e.retained_generations(), 1);
}

#[test]
fn a_request_no_route_matches_is_answered_404_nr_at_once() {
    let mut e = engine(&two_hosts("", ""));
    let (ex, step) = Exchange::start(&mut e, &Request::get("other", "/"), ms(0));
    let a = answer(step);
    assert_eq!(
        (a.status, flags(&a).as_str(), a.from_upstream),
        (404, "NR", false)
    );
    assert_eq!(a.cause, Some(ResponseFlag::NoRouteFound));
    assert_eq!(ex.phase(), Phase::Done);
}

#[test]
fn an_answered_attempt_is_the_answer_with_no_flag() {
    let mut e = engine(&two_hosts("", ""));
    let (mut ex, step) = Exchange::start(&mut e, &req(), ms(0));
    assert!(forwarded_to(&e, step).starts_with("10.1.0."));
    assert_eq!(ex.attempts(), 1);
    assert_eq!(
        ex.admit(&mut e, true, false, ms(0)),
        Admit::Send { try_deadline: None }
    );
    let a = answer(ex.handle_response(&mut e, Outcome::Status(200), ms(7)));
    assert_eq!(
        (a.status, a.flags, a.from_upstream),
        (200, ResponseFlags::NONE, true)
    );
    assert_released(&e);
}

#[test]
fn per_try_timeouts_that_use_up_the_retries_answer_504_ut_urx() {
    let route = r#"retries = { attempts = 2, retryOn = "5xx", perTryTimeout = "100ms" }"#;
    let mut e = engine(&two_hosts(route, ""));
    let (mut ex, mut step) = Exchange::start(&mut e, &req(), ms(0));
    let mut now = ms(0);
    for attempt in 1..=3 {
        assert!(matches!(step, Step::Forward(_)), "{step:?}");
        assert_eq!(ex.attempts(), attempt);
        // The per-try timeout starts when the attempt gets its connection.
        assert_eq!(
            ex.admit(&mut e, true, false, now),
            Admit::Send {
                try_deadline: Some(now + Duration::from_millis(100))
            }
        );
        now = now + Duration::from_millis(100);
        step = match ex.handle_response(&mut e, Outcome::Timeout, now) {
            Step::Backoff { until } => {
                assert!(until >= now && until < now + Duration::from_millis(25 << attempt));
                now = until;
                ex.handle_backoff_over(&mut e, now)
            }
            last => last,
        };
    }
    let a = answer(step);
    assert_eq!(
        (a.status, flags(&a).as_str(), a.from_upstream),
        (504, "UT,URX", false)
    );
    assert_eq!(a.cause, Some(ResponseFlag::UpstreamRequestTimeout));
    assert_eq!(
        e.cluster_stats(ClusterId(0))
            .upstream_rq_retry_limit_exceeded,
        1
    );
    assert_released(&e);
}

#[test]
fn a_retry_goes_to_the_other_host_and_its_answer_is_the_answer() {
    let route = r#"retries = { attempts = 2, retryOn = "5xx" }"#;
    let mut e = engine(&two_hosts(route, ""));
    let (mut ex, step) = Exchange::start(&mut e, &req(), ms(0));
    let first = forwarded_to(&e, step);
    assert!(matches!(
        ex.admit(&mut e, true, false, ms(0)),
        Admit::Send { .. }
    ));
    let Step::Backoff { until } = ex.handle_response(&mut e, Outcome::Status(503), ms(5)) else {
        panic!("a 503 is retried")
    };
    assert_eq!(ex.phase(), Phase::BackingOff);
    let step = ex.handle_backoff_over(&mut e, until);
    assert_ne!(forwarded_to(&e, step), first);
    assert_eq!(ex.attempts(), 2);
    assert!(matches!(
        ex.admit(&mut e, true, false, until),
        Admit::Send { .. }
    ));
    let a = answer(ex.handle_response(
        &mut e,
        Outcome::Status(200),
        until + Duration::from_millis(3),
    ));
    assert_eq!((a.status, a.flags), (200, ResponseFlags::NONE));
    let s = e.cluster_stats(ClusterId(0));
    assert_eq!((s.upstream_rq_retry, s.upstream_rq_retry_success), (1, 1));
    assert_released(&e);
}

#[test]
fn resets_answer_as_envoys_router_maps_their_reasons() {
    for (reason, status, flag) in [
        (ResetReason::ConnectionTermination, 503, "UC"),
        (ResetReason::RemoteReset, 503, "UR"),
        (ResetReason::ProtocolError, 502, "UPE"),
    ] {
        let mut e = engine(&two_hosts("", ""));
        let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
        let _ = ex.admit(&mut e, true, false, ms(0));
        let a = answer(ex.handle_response(&mut e, Outcome::Reset(reason), ms(1)));
        assert_eq!(
            (a.status, flags(&a).as_str(), a.from_upstream),
            (status, flag, false)
        );
    }
    // (Istio's default policy retries connect failures: none here.)
    let mut e = engine(&two_hosts("retries = { attempts = 0 }", ""));
    let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
    let _ = ex.admit(&mut e, true, false, ms(0));
    let a = answer(ex.handle_response(&mut e, Outcome::ConnectFailure, ms(1)));
    assert_eq!((a.status, flags(&a).as_str()), (503, "UF"));
}

#[test]
fn an_overflow_is_answered_503_uo_and_never_retried() {
    let route = r#"retries = { attempts = 2, retryOn = "5xx" }"#;
    let pool = r#"connectionPool = { http = { http1MaxPendingRequests = 1 } }"#;
    let mut e = engine(&two_hosts(route, pool));
    // One queued request fills the pending queue; the next overflows.
    let (mut first, _) = Exchange::start(&mut e, &req(), ms(0));
    assert_eq!(
        first.admit(&mut e, false, true, ms(0)),
        Admit::Queue {
            open_connection: true
        }
    );
    let (mut second, _) = Exchange::start(&mut e, &req(), ms(0));
    let Admit::Answer(a) = second.admit(&mut e, false, false, ms(0)) else {
        panic!("the second request overflows")
    };
    assert_eq!((a.status, flags(&a).as_str()), (503, "UO"));
    assert_eq!(a.cause, Some(ResponseFlag::UpstreamOverflow));
    assert_eq!(second.phase(), Phase::Done);
    assert!(matches!(
        e.poll_event(),
        Some((t, EngineEvent::Overflow { .. })) if t == ms(0)
    ));
    // The queued one gets its connection.
    assert!(matches!(first.dequeue(&mut e, ms(2)), Admit::Send { .. }));
    let a = answer(first.handle_response(&mut e, Outcome::Status(200), ms(4)));
    assert_eq!(a.status, 200);
    assert_released(&e);
}

#[test]
fn a_failed_connect_for_a_queued_attempt_is_its_connect_failure() {
    let mut e = engine(&two_hosts("retries = { attempts = 0 }", ""));
    let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
    assert!(matches!(
        ex.admit(&mut e, false, true, ms(0)),
        Admit::Queue { .. }
    ));
    let a = answer(ex.handle_connect_failure(&mut e, ms(10)));
    assert_eq!((a.status, flags(&a).as_str()), (503, "UF"));
    assert_released(&e);
}

#[test]
fn an_injected_delay_holds_the_router_and_every_answer_says_di() {
    let route = r#"timeout = "1s"
fault = { delay = { fixedDelay = "2s", percentage = { value = 100 } } }"#;
    let mut e = engine(&two_hosts(route, ""));
    let (mut ex, step) = Exchange::start(&mut e, &req(), ms(0));
    assert_eq!(step, Step::Delay { until: ms(2000) });
    assert_eq!(ex.phase(), Phase::Delayed);
    // No route timeout before the router runs.
    assert_eq!(ex.handle_route_timeout(&mut e, ms(1000)), Step::Stale);
    let step = ex.handle_delay_over(&mut e, &req(), ms(2000));
    // The route timeout starts with the router.
    let Step::Forward(f) = step else {
        panic!("forwarded after the delay")
    };
    assert_eq!(f.timeout, Some(Duration::from_secs(1)));
    assert!(matches!(
        ex.admit(&mut e, true, false, ms(2000)),
        Admit::Send { .. }
    ));
    let a = answer(ex.handle_route_timeout(&mut e, ms(3000)));
    assert_eq!((a.status, flags(&a).as_str()), (504, "UT,DI"));
    assert_released(&e);
}

#[test]
fn the_route_timeout_during_a_back_off_frees_the_retry_slot() {
    let route = r#"timeout = "50ms"
retries = { attempts = 2, retryOn = "5xx" }"#;
    let mut e = engine(&two_hosts(route, ""));
    let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
    let _ = ex.admit(&mut e, true, false, ms(0));
    let Step::Backoff { .. } = ex.handle_response(&mut e, Outcome::Status(500), ms(49)) else {
        panic!("retried")
    };
    assert_eq!(e.breaker_stats(ClusterId(0)).active_retries, 1);
    let a = answer(ex.handle_route_timeout(&mut e, ms(50)));
    assert_eq!((a.status, flags(&a).as_str()), (504, "UT"));
    // The back-off's end finds nothing to do.
    assert_eq!(ex.handle_backoff_over(&mut e, ms(60)), Step::Stale);
    assert_released(&e);
}

#[test]
fn a_request_given_up_in_any_phase_leaves_nothing_held() {
    let route = r#"retries = { attempts = 2, retryOn = "5xx" }"#;
    let delayed = r#"fault = { delay = { fixedDelay = "1s", percentage = { value = 100 } } }"#;
    let pool = r#"connectionPool = { http = { http1MaxPendingRequests = 1 } }"#;
    // Each case brings the exchange to a phase, then the client goes away.
    type Setup = fn(&mut Engine, &mut Exchange);
    let cases: [(&str, &str, Phase, Setup); 5] = [
        (route, "delayed", Phase::Delayed, |_, _| {}),
        (route, "admitting", Phase::Admitting, |_, _| {}),
        (route, "queued", Phase::Queued, |e, ex| {
            let _ = ex.admit(e, false, true, ms(0));
        }),
        (route, "sent", Phase::Sent, |e, ex| {
            let _ = ex.admit(e, true, false, ms(0));
        }),
        (route, "backing off", Phase::BackingOff, |e, ex| {
            let _ = ex.admit(e, true, false, ms(0));
            let _ = ex.handle_response(e, Outcome::Status(503), ms(1));
        }),
    ];
    for (route, name, phase, setup) in cases {
        let route = if phase == Phase::Delayed {
            format!("{route}\n{delayed}")
        } else {
            route.to_owned()
        };
        let mut e = engine(&two_hosts(&route, pool));
        let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
        setup(&mut e, &mut ex);
        assert_eq!(ex.phase(), phase, "{name}");
        ex.cancel(&mut e, ms(2));
        ex.cancel(&mut e, ms(2));
        assert_eq!(ex.phase(), Phase::Done, "{name}");
        assert_released(&e);
        // No host keeps an active request: round robin's next pick and
        // least-request state are untouched by the cancelled one.
        let active: Vec<u32> = (0..2)
            .map(|i| e.active_requests(e.upstream(ClusterId(0), i)))
            .collect();
        assert_eq!(active, [0, 0], "{name}");
    }
}

#[test]
fn calls_out_of_phase_are_stale_and_change_nothing() {
    let mut e = engine(&two_hosts("", ""));
    let (mut ex, _) = Exchange::start(&mut e, &req(), ms(0));
    assert_eq!(
        ex.handle_response(&mut e, Outcome::Status(200), ms(1)),
        Step::Stale
    );
    assert_eq!(ex.dequeue(&mut e, ms(1)), Admit::Stale);
    assert_eq!(ex.handle_backoff_over(&mut e, ms(1)), Step::Stale);
    assert_eq!(ex.handle_delay_over(&mut e, &req(), ms(1)), Step::Stale);
    let _ = ex.admit(&mut e, true, false, ms(1));
    assert_eq!(ex.admit(&mut e, true, false, ms(1)), Admit::Stale);
    let _ = answer(ex.handle_response(&mut e, Outcome::Status(200), ms(2)));
    assert_eq!(ex.handle_route_timeout(&mut e, ms(3)), Step::Stale);
    assert_eq!(
        ex.handle_response(&mut e, Outcome::Status(200), ms(3)),
        Step::Stale
    );
    assert_released(&e);
}

#[test]
fn a_request_whose_body_outgrew_the_retry_buffer_answers_its_first_failure() {
    let route = r#"retries = { attempts = 2, retryOn = "5xx" }"#;
    let mut e = engine(&two_hosts(route, ""));
    let (mut ex, step) = Exchange::start(&mut e, &req(), ms(0));
    assert!(matches!(step, Step::Forward(_)));
    assert!(matches!(
        ex.admit(&mut e, true, false, ms(0)),
        Admit::Send { .. }
    ));
    // The body streams past the buffer: Envoy's router drops its retry
    // state, so the 503 is the answer, with no `URX`.
    ex.abandon_retries(&mut e, ms(1));
    let a = answer(ex.handle_response(&mut e, Outcome::Status(503), ms(5)));
    assert_eq!(
        (a.status, a.flags, a.from_upstream),
        (503, ResponseFlags::NONE, true)
    );
    assert_eq!(ex.attempts(), 1);
    let s = e.cluster_stats(ClusterId(0));
    assert_eq!((s.retry_or_shadow_abandoned, s.upstream_rq_retry), (1, 0));
    assert_released(&e);
}
