use std::net::SocketAddr;

use super::*;
use crate::msg::ConnInfo;

#[test]
fn a_prefix_rewrite_replaces_the_matched_prefix_and_keeps_the_query() {
    let m = Match {
        uri: Some(StrMatch::Prefix("/api/v1".into())),
        ..Match::default()
    };
    let rw = mesh_engine::config::Rewrite {
        uri: Some("/v1".into()),
        authority: None,
        uri_regex: None,
    };
    assert_eq!(
        rewrite_path("/api/v1/users?x=1", &[m], &rw),
        "/v1/users?x=1"
    );
    assert_eq!(rewrite_path("/other", &[], &rw), "/v1");
}

#[test]
fn the_client_ip_is_formatted_once_for_forwarded_for() {
    let local = "127.0.0.1:80".parse().unwrap();
    for ip in [
        "10.1.2.3",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:10.1.2.3",
    ] {
        let remote = SocketAddr::new(ip.parse().unwrap(), 5000);
        assert_eq!(ConnInfo::new(remote, local).remote_ip(), ip.as_bytes());
    }
}

#[test]
fn the_overflow_reply_says_overloaded() {
    let a = Answer::local(503, Some(ResponseFlag::UpstreamOverflow), "x");
    assert_eq!(
        hdr::get(&a.headers, "x-envoy-overloaded"),
        Some(&b"true"[..])
    );
    assert_eq!(a.flags.to_string(), "UO");
}

#[test]
fn redirects_keep_the_host_without_its_port() {
    assert_eq!(host_only("echo:8080"), "echo");
    assert_eq!(host_only("[::1]:80"), "[::1]");
    assert_eq!(host_only("echo"), "echo");
}
