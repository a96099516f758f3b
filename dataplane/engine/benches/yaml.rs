//! Criterion benchmark of reading Istio manifests (`config::yaml`): a 1 MB
//! multi-document file of VirtualServices, parsed into the `Node` tree and
//! read into mesh tables with the line:column of every field. Results,
//! machine and command are in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_engine::config::yaml;

fn manifests(bytes: usize) -> String {
    let mut body = String::with_capacity(bytes + 1024);
    let mut i = 0;
    while body.len() < bytes {
        body.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs-{i}\nspec:\n  hosts:\n  - host-{i}.example.com\n  http:\n  - match:\n    - uri:\n        prefix: /a\n    route:\n    - destination:\n        host: reviews\n  - route:\n    - destination:\n        host: reviews\n"
        ));
        i += 1;
    }
    body
}

fn bench(c: &mut Criterion) {
    let body = manifests(1_000_000);
    let mut g = c.benchmark_group("yaml_1mb");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| yaml::parse(black_box(&body), "b.yaml").unwrap().len());
    });
    g.bench_function("read", |b| {
        b.iter(|| {
            yaml::read(black_box(&body), "b.yaml")
                .unwrap()
                .objects
                .len()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
