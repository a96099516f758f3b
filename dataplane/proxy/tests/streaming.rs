//! Bodies beyond `--buffer-limit` stream through the proxy in both
//! directions (HTTP/1.1 with a length or chunked, HTTP/2 clients and
//! upstreams), arrive intact, keep the proxy's memory bounded, and are
//! not retried (Envoy's retry buffer overflow). Real clients: curl.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{Echo, Proxy, service};
use mesh_proxy::echo::fnv1a_of;

/// A deterministic body of `n` bytes (not one repeated byte, so that a
/// piece lost or sent twice changes its hash).
fn body(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// What curl got: the status, the response headers (lower-case names),
/// and the body's length and bytes other than `x` (meshecho's `size`
/// bodies are all `x`).
struct Got {
    status: u16,
    headers: BTreeMap<String, String>,
    len: u64,
    not_x: u64,
}

/// Runs curl against the proxy with `args` (the upload, if any), `Host:
/// echo`, `path`; the body goes to a file.
fn curl(p: &Proxy, path: &str, args: &[&str]) -> Got {
    let dir = common::temp_dir("streaming-curl");
    let out = dir.join("body");
    let heads = dir.join("heads");
    let status = Command::new("curl")
        .args(["-s", "-S", "-H", "Host: echo", "-o"])
        .arg(&out)
        .arg("-D")
        .arg(&heads)
        .args(args)
        .arg(format!("http://{}{path}", p.addr))
        .status()
        .expect("curl runs (apt-get install curl)");
    assert!(status.success(), "curl {args:?} failed: {status}");
    let text = std::fs::read_to_string(&heads).unwrap();
    // The last head (after any `100 Continue`).
    let last = text.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let bytes = std::fs::read(&out).unwrap_or_default();
    Got {
        status,
        headers,
        len: bytes.len() as u64,
        not_x: bytes.iter().filter(|b| **b != b'x').count() as u64,
    }
}

fn write_body(dir: &Path, n: usize) -> (std::path::PathBuf, u64) {
    let b = body(n);
    let path = dir.join("upload");
    std::fs::write(&path, &b).unwrap();
    (path, fnv1a_of(&b))
}

/// The upload arrived whole (meshecho's count and hash) and the download
/// came back whole.
fn assert_both_ways(got: &Got, sent: usize, fnv: u64, asked: u64) {
    assert_eq!(got.status, 200, "{:?}", got.headers);
    assert_eq!(
        got.headers.get("x-meshecho-received").map(String::as_str),
        Some(sent.to_string().as_str()),
        "{:?}",
        got.headers
    );
    assert_eq!(
        got.headers.get("x-meshecho-fnv").map(String::as_str),
        Some(format!("{fnv:016x}").as_str())
    );
    assert_eq!((got.len, got.not_x), (asked, 0));
}

const LIMIT: &str = "65536";

#[test]
fn bodies_beyond_the_buffer_limit_stream_both_ways_over_http1_with_their_length() {
    let a = Echo::start("v1", &[]);
    // One worker: one pool, to see its connection come back.
    let p = Proxy::start(
        &service(&[(&a, "v1")]),
        &["--buffer-limit", LIMIT, "--concurrency", "1"],
    );
    let dir = common::temp_dir("streaming");
    let (file, fnv) = write_body(&dir, 6 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(&p, "/?size=5000000", &["--data-binary", &upload]);
    assert_both_ways(&got, 6 << 20, fnv, 5_000_000);
    // The upstream's length goes on to the client.
    assert_eq!(
        got.headers.get("content-length").map(String::as_str),
        Some("5000000")
    );
    // The connection to the upstream went back to its pool at the body's
    // end, and the next streamed answer reuses it.
    let again = curl(&p, "/?size=3000000", &[]);
    assert_eq!((again.status, again.len), (200, 3_000_000));
    let opened: u64 = p
        .admin("/stats")
        .body
        .lines()
        .filter(|l| l.starts_with("meshproxy_upstream_cx_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(opened, 1);
}

#[test]
fn a_chunked_upload_streams_up_in_chunks_and_arrives_whole() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--buffer-limit", LIMIT]);
    let dir = common::temp_dir("streaming");
    let (file, fnv) = write_body(&dir, 3 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(
        &p,
        "/?size=10",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &upload],
    );
    assert_both_ways(&got, 3 << 20, fnv, 10);
}

#[test]
fn an_http2_client_streams_up_and_down_through_an_http1_upstream() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--buffer-limit", LIMIT]);
    let dir = common::temp_dir("streaming");
    let (file, fnv) = write_body(&dir, 4 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(
        &p,
        "/?size=4500000",
        &["--http2-prior-knowledge", "--data-binary", &upload],
    );
    assert_both_ways(&got, 4 << 20, fnv, 4_500_000);
}

#[test]
fn an_http1_client_streams_up_and_down_through_an_http2_upstream() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + r#"
[[destinationRule]]
name = "echo"
host = "echo"
trafficPolicy = { connectionPool = { http = { h2UpgradePolicy = "UPGRADE" } } }
"#;
    let p = Proxy::start(&config, &["--buffer-limit", LIMIT]);
    let dir = common::temp_dir("streaming");
    let (file, fnv) = write_body(&dir, 4 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(&p, "/?size=4500000", &["--data-binary", &upload]);
    assert_both_ways(&got, 4 << 20, fnv, 4_500_000);
    assert_eq!(
        got.headers.get("x-meshecho-proto").map(String::as_str),
        Some("HTTP/2")
    );
}

/// Envoy's router keeps a request body for retries up to its buffer limit
/// and gives up retrying beyond it: a streamed request's 503 is the
/// answer after one attempt, where a small one is retried twice.
#[test]
fn a_request_whose_body_streams_is_not_retried() {
    let a = Echo::start("v1", &[]);
    let config = service(&[(&a, "v1")])
        + r#"
[[virtualService]]
name = "echo"
hosts = ["echo"]
[[virtualService.http]]
retries = { attempts = 2, retryOn = "5xx" }
route = [{ destination = { host = "echo" } }]
"#;
    let p = Proxy::start(&config, &["--buffer-limit", LIMIT]);
    let attempts = || {
        let body = p.admin("/stats").body;
        body.lines()
            .filter(|l| {
                l.starts_with("meshproxy_upstream_rq_total{") && l.contains("class=\"5xx\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let dir = common::temp_dir("streaming");
    let (small, _) = write_body(&dir, 1000);
    let got = curl(
        &p,
        "/?status=503&size=1",
        &["--data-binary", &format!("@{}", small.display())],
    );
    assert_eq!(got.status, 503);
    assert_eq!(attempts(), 3, "a small body is retried");
    let (large, _) = write_body(&dir, 1 << 20);
    let got = curl(
        &p,
        "/?status=503&size=1",
        &["--data-binary", &format!("@{}", large.display())],
    );
    assert_eq!(got.status, 503);
    assert_eq!(attempts(), 4, "a streamed body is sent once");
    let abandoned = p
        .admin("/stats")
        .body
        .lines()
        .find(|l| l.starts_with("meshproxy_cluster_retry_or_shadow_abandoned_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(abandoned, Some(1));
}

/// A body over `--max-body-bytes` is refused 413 whether its length is
/// announced (before anything is sent up) or it is chunked (once it
/// passes the limit while streaming).
#[test]
fn bodies_over_max_body_bytes_get_413_announced_or_chunked() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(
        &service(&[(&a, "v1")]),
        &["--buffer-limit", LIMIT, "--max-body-bytes", "1000000"],
    );
    let dir = common::temp_dir("streaming");
    let (file, _) = write_body(&dir, 2 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(&p, "/?size=1", &["--data-binary", &upload]);
    assert_eq!(got.status, 413);
    let got = curl(
        &p,
        "/?size=1",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &upload],
    );
    assert_eq!(got.status, 413);
}

/// The proxy's memory stays bounded while 64 MiB go up and 64 MiB come
/// down at once: pieces are read only as fast as they are written.
#[test]
fn streaming_64_mib_each_way_keeps_the_proxy_under_48_mib() {
    let a = Echo::start("v1", &[]);
    let p = Proxy::start(&service(&[(&a, "v1")]), &["--access-log", "off"]);
    let dir = common::temp_dir("streaming");
    let (file, fnv) = write_body(&dir, 64 << 20);
    let upload = format!("@{}", file.display());
    let got = curl(&p, "/?size=67108864", &["--data-binary", &upload]);
    assert_both_ways(&got, 64 << 20, fnv, 64 << 20);
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.proc.child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(peak_kb < 48 << 10, "peak RSS {peak_kb} kB");
}
