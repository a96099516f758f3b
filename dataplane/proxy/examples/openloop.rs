//! An open-loop HTTP/1.1 load generator for `bench/proxy.sh` (wrk has no
//! open-loop mode in Debian, oha is not packaged): requests are scheduled
//! at a fixed rate whatever the answers do, over keep-alive connections.
//! Each latency is measured from the moment the request is written (as oha
//! does by default); the lateness of each send against its schedule is
//! reported apart (tokio's timer has a 1 ms resolution, so sends are up to
//! about a millisecond late even when nothing stalls; a stall shows there).
//!
//! ```sh
//! cargo run --release -p mesh-proxy --example openloop -- \
//!     ADDR RATE SECONDS [CONNECTIONS] [HOST]
//! ```
//!
//! Prints requests, errors (non-2xx or failed), the achieved rate, the
//! latency percentiles p50/p90/p99/max in microseconds, and the p50/p99 of
//! the sends' lateness. Connection `k` of
//! `C` sends requests `k, k + C, k + 2C, …` at `t0 + i / RATE`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: openloop ADDR RATE SECONDS [CONNECTIONS] [HOST]";
    let (Some(addr), Some(rate), Some(secs)) = (
        args.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(1).and_then(|a| a.parse::<f64>().ok()),
        args.get(2).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let conns: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(16);
    let host = args.get(4).cloned().unwrap_or_else(|| "echo".to_owned());
    if rate <= 0.0 || secs <= 0.0 || conns == 0 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let total = (rate * secs) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let results = local.block_on(&rt, async move {
        let t0 = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::new();
        for k in 0..conns {
            let host = host.clone();
            tasks.push(tokio::task::spawn_local(async move {
                connection(addr, &host, k, conns, total, rate, t0).await
            }));
        }
        let mut lat = Vec::with_capacity(total);
        let mut late = Vec::with_capacity(total);
        let mut errors = 0usize;
        for t in tasks {
            if let Ok((l, d, e)) = t.await {
                lat.extend(l);
                late.extend(d);
                errors += e;
            }
        }
        (lat, late, errors, t0.elapsed())
    });
    let (mut lat, mut late, errors, took) = results;
    lat.sort_unstable();
    late.sort_unstable();
    println!(
        "requests {} errors {} rate {:.0}/s p50_us {} p90_us {} p99_us {} max_us {} send_late_p50_us {} send_late_p99_us {}",
        lat.len(),
        errors,
        lat.len() as f64 / took.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().map_or(0, Duration::as_micros),
        pct(&late, 0.5),
        pct(&late, 0.99),
    );
}

/// The `p` quantile of sorted durations, in microseconds.
fn pct(sorted: &[Duration], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_micros()
}

/// Sends this connection's share of the schedule; (latencies, lateness
/// of the sends, errors).
async fn connection(
    addr: SocketAddr,
    host: &str,
    k: usize,
    conns: usize,
    total: usize,
    rate: f64,
    t0: Instant,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let mut lat = Vec::with_capacity(total / conns + 1);
    let mut late = Vec::with_capacity(total / conns + 1);
    let mut errors = 0;
    let mut stream = None;
    let mut buf = Vec::with_capacity(4096);
    let mut i = k;
    while i < total {
        let at = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        if stream.is_none() {
            stream = tokio::net::TcpStream::connect(addr).await.ok();
            if let Some(s) = &stream {
                let _ = s.set_nodelay(true);
            }
        }
        let sent = Instant::now();
        late.push(sent.saturating_duration_since(at));
        let ok = match stream.as_mut() {
            Some(s) => exchange(s, &request, &mut buf).await,
            None => None,
        };
        match ok {
            Some(status) => {
                lat.push(sent.elapsed());
                if !(200..300).contains(&status) {
                    errors += 1;
                }
            }
            None => {
                errors += 1;
                stream = None;
            }
        }
        i += conns;
    }
    (lat, late, errors)
}

/// One request and its `Content-Length` response; the status, or `None`
/// if the connection failed or the answer cannot be read.
async fn exchange(s: &mut tokio::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Option<u16> {
    s.write_all(request).await.ok()?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = r.parse(buf).ok()? {
            let length: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            let status = r.code?;
            while buf.len() < head + length {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
    }
}
