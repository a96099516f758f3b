//! meshproxy's drain on SIGTERM, as Kubernetes needs it: `/ready` fails at
//! once, the listeners keep accepting for `--drain-time` with every answer
//! closing its connection, then they close and in-flight requests have
//! `--drain-timeout` to finish. Real binaries over loopback; no timing
//! asserts, only orders of events.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{Echo, Proxy, get, read_response, service};

#[test]
fn with_no_drain_time_sigterm_closes_the_listeners_at_once_and_finishes_in_flight_requests() {
    use std::io::{Read, Write};
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")]);
    // A drain timeout longer than the test's patience: idle connections
    // must not hold it.
    let args = [
        "--drain-time",
        "0s",
        "--drain-timeout",
        "60s",
        "--header-read-timeout",
        "60s",
    ];
    let mut p = Proxy::start(&config, &args);
    let addr = p.addr;
    // Two idle connections: a fresh one, and one after a keep-alive answer.
    let mut fresh = std::net::TcpStream::connect(addr).unwrap();
    let mut kept = std::net::TcpStream::connect(addr).unwrap();
    kept.set_read_timeout(Some(common::PATIENCE)).unwrap();
    fresh.set_read_timeout(Some(common::PATIENCE)).unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut kept, &mut Vec::new()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let handles: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || get(addr, "/?delay=1s", &[])))
        .collect();
    p.eventually("all five in flight", || {
        p.admin("/stats")
            .body
            .contains("meshproxy_downstream_rq_active 5")
    });
    p.proc.signal("TERM");
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "a request was lost in the drain: {r:?}");
    }
    let status = p.proc.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    for idle in [&mut fresh, &mut kept] {
        assert_eq!(idle.read(&mut [0u8; 16]).unwrap_or(0), 0);
    }
}

/// One client of a rolling update: keep-alive requests in a loop to
/// whichever proxy the "endpoints" name (the old pod until `moved`, then
/// the new one), reconnecting when an answer says `connection: close`, as
/// HTTP/1.1 clients do. Counts answers, errors and the closing answers
/// of the old proxy.
struct Client {
    ok: AtomicU32,
    errors: std::sync::Mutex<Vec<String>>,
    closed_by_old: AtomicU32,
    moved: AtomicBool,
    done: AtomicBool,
}

fn roll(client: &Client, old: SocketAddr, new: SocketAddr) {
    let mut conn: Option<(TcpStream, SocketAddr)> = None;
    let mut buf = Vec::new();
    while !client.done.load(Ordering::SeqCst) {
        let target = if client.moved.load(Ordering::SeqCst) {
            new
        } else {
            old
        };
        let (s, at) = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(target) {
                Ok(s) => {
                    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
                    buf.clear();
                    (s, target)
                }
                Err(e) => {
                    client
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("connect {target}: {e}"));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let mut s = s;
        let answer = s
            .write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
            .map_err(|e| format!("write: {e}"))
            .and_then(|()| read_response(&mut s, &mut buf));
        match answer {
            Ok((head, _)) if head.starts_with("HTTP/1.1 200") => {
                client.ok.fetch_add(1, Ordering::SeqCst);
                if head.to_ascii_lowercase().contains("connection: close") {
                    if at == old {
                        client.closed_by_old.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    conn = Some((s, at));
                }
            }
            Ok((head, _)) => client.errors.lock().unwrap().push(head),
            Err(e) => client.errors.lock().unwrap().push(format!("{at}: {e}")),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_looping_through_a_rolling_update_sees_no_error() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")]);
    let mut old = Proxy::start(&config, &["--drain-time", "2s", "--drain-timeout", "20s"]);
    let new = Proxy::start(&config, &[]);
    let client = Arc::new(Client {
        ok: AtomicU32::new(0),
        errors: std::sync::Mutex::new(Vec::new()),
        closed_by_old: AtomicU32::new(0),
        moved: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    let (old_addr, new_addr) = (old.addr, new.addr);
    let looping = {
        let client = client.clone();
        std::thread::spawn(move || roll(&client, old_addr, new_addr))
    };
    // A long request in flight when the pod is told to stop.
    let long = std::thread::spawn(move || get(old_addr, "/?delay=3s", &[]));
    old.eventually("the long request in flight", || {
        old.admin("/stats")
            .body
            .contains("meshproxy_downstream_rq_active 1")
    });
    let before = client.ok.load(Ordering::SeqCst);
    old.proc.signal("TERM");
    old.proc.stderr.wait_for("meshproxy: draining");
    // Draining: /ready fails, so Kubernetes takes the pod out of the
    // endpoints; meanwhile the listener still accepts, and answers close
    // their connections.
    let ready = old.admin("/ready");
    assert_eq!((ready.status, ready.body.trim()), (503, "DRAINING"));
    let fresh = get(old_addr, "/", &[]);
    assert_eq!(
        fresh.status, 200,
        "a new connection during the drain: {fresh:?}"
    );
    old.eventually("an answer of the old proxy closing its connection", || {
        client.closed_by_old.load(Ordering::SeqCst) > 0
    });
    // The endpoints change (well within the drain time).
    client.moved.store(true, Ordering::SeqCst);
    let r = long.join().unwrap();
    assert_eq!(
        r.status, 200,
        "the long request was lost in the drain: {r:?}"
    );
    let status = old.proc.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(old_addr).is_err(), "still accepting");
    let after_exit = client.ok.load(Ordering::SeqCst);
    new.eventually("the client served by the new proxy", || {
        client.ok.load(Ordering::SeqCst) > after_exit + 5
    });
    client.done.store(true, Ordering::SeqCst);
    looping.join().unwrap();
    let errors = client.errors.lock().unwrap();
    assert!(errors.is_empty(), "the client saw errors: {errors:?}");
    assert!(client.ok.load(Ordering::SeqCst) > before);
    let log = old.proc.stderr.text();
    assert!(
        log.contains("meshproxy: stopped (0 requests still in flight)"),
        "{log}"
    );
}

#[test]
fn a_draining_proxy_still_serves_a_new_http2_connection() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")]);
    let old = Proxy::start(&config, &["--drain-time", "3s"]);
    old.proc.signal("TERM");
    old.proc.stderr.wait_for("meshproxy: draining");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "-H",
            "host: echo",
        ])
        .arg(format!("http://{}/", old.addr))
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "200 2", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn while_draining_an_idle_keep_alive_connection_is_closed_and_the_listener_still_accepts() {
    use std::io::Read;
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")]);
    let p = Proxy::start(&config, &["--drain-time", "5s"]);
    let mut kept = TcpStream::connect(p.addr).unwrap();
    kept.set_read_timeout(Some(common::PATIENCE)).unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut kept, &mut Vec::new()).unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    p.proc.signal("TERM");
    p.proc.stderr.wait_for("meshproxy: draining");
    // Idle through the drain: closed (after a second), not left until the
    // listener closes, so the client's reconnect still finds it open.
    assert_eq!(kept.read(&mut [0u8; 16]).unwrap_or(0), 0);
    let r = get(p.addr, "/", &[]);
    assert_eq!(r.status, 200, "{r:?}");
}
