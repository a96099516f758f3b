//! Routing facts as a whole run sees them: a destination with no cluster
//! (503 NC) and `port` match blocks, with exact counts from seeded runs.
//!
//! Every number below is virtual time or a count: the same on every
//! machine.

use meshsim::Model;
use meshsim::metrics::Metrics;

fn build(text: &str) -> (Model, Vec<String>) {
    let file = meshsim::experiment::parse(text, None).unwrap_or_else(|e| panic!("{e}"));
    match Model::build(&file, None) {
        Ok((m, w)) => (m, w.iter().map(ToString::to_string).collect()),
        Err(e) => panic!("{e:#?}"),
    }
}

fn run(model: &Model) -> Metrics {
    meshsim::Run::new(model).run().expect("the run completes")
}

/// Attempts received per version (`<service>-<version>`), over the run.
fn attempts(m: &Metrics) -> std::collections::BTreeMap<String, u64> {
    let mut by = std::collections::BTreeMap::new();
    for w in &m.windows {
        let workload = w.endpoint.rsplit_once('-').unwrap().0.to_owned();
        *by.entry(workload).or_default() += w.requests;
    }
    by
}

/// `reviews` (v1, v2: one pod each, 1 ms), 100 uniform requests per second
/// from one sidecar for `duration`, and `extra` TOML.
fn reviews(duration: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
name = "routing"
duration = "{duration}"
[[service]]
name = "reviews"
port = {port}
[[service.version]]
name = "v1"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[service.version]]
name = "v2"
pods = 1
latency = {{ distribution = "constant", value = "1ms" }}
[[client]]
name = "fortio"
[load]
client = "fortio"
host = "reviews"
qps = 100
arrivals = "uniform"
{extra}
"#
    )
}

const RULE: &str = r#"
name = "reviews"
host = "reviews"
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]
"#;

#[test]
fn a_virtual_service_pushed_before_its_destination_rule_gets_503_nc_until_the_rule_arrives() {
    // Requests leave every 10 ms from 10 ms on; the rule is pushed at
    // 995 ms: the 99 requests before it are answered 503 NC by the sidecar
    // without reaching a pod, the 100 from 1,000 ms to 1,990 ms reach v1
    // and are answered 1 ms later; the one sent at 2 s reaches v1 too but
    // is still in flight when the run ends.
    let vs = r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [{ destination = { host = "reviews", subset = "v1" } }]
"#;
    let extra = format!(
        r#"{vs}
[[timeline]]
at = "995ms"
[timeline.push]
{}
[[timeline.push.destinationRule]]
{RULE}"#,
        vs.replace("[[virtualService", "[[timeline.push.virtualService")
    );
    let (model, warnings) = build(&reviews("2s", 9080, &extra));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("virtualService[reviews].http[0].route[0].destination.subset: unknown subset \"v1\""),
        "{warnings:#?}"
    );
    let m = run(&model);
    assert_eq!(m.requests, 199);
    assert_eq!((m.by_status[503], m.by_status[200]), (99, 100));
    assert_eq!(m.flag("NC"), 99);
    assert_eq!(m.by_flag.len(), 1, "{:?}", m.by_flag);
    // No pod saw the rejected requests.
    let pods = attempts(&m);
    assert_eq!((pods["reviews-v1"], pods["reviews-v2"]), (101, 0));
    let text = meshsim::output::summary_text(&model, &m);
    assert!(text.contains("Code 503 : 99 (49.7 %)\n"), "{text}");
    assert!(text.contains("Flag NC : 99\n"), "{text}");
}

#[test]
fn a_destination_with_a_missing_subset_gets_its_share_of_503_nc() {
    // 90 % v1, 10 % v9 (no such subset): 100 s at 100 qps, 10,000 draws.
    let extra = format!(
        r#"
[[destinationRule]]
{RULE}
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
route = [
  {{ destination = {{ host = "reviews", subset = "v1" }}, weight = 90 }},
  {{ destination = {{ host = "reviews", subset = "v9" }}, weight = 10 }},
]
"#
    );
    let (model, warnings) = build(&reviews("100s", 9080, &extra));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let m = run(&model);
    let nc = m.flag("NC");
    assert_eq!(m.by_status[503], nc);
    assert_eq!(m.by_status[200] + nc, m.requests);
    assert!((900..=1_100).contains(&nc), "{nc} of {}", m.requests);
    // Only v1 saw requests: those answered, and the one sent at 100 s,
    // still in flight at the end.
    let pods = attempts(&m);
    assert_eq!(pods["reviews-v1"], m.by_status[200] + 1);
    assert_eq!(pods["reviews-v2"], 0);
}
