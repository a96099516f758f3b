use super::*;

fn one(src: &str) -> Node {
    parse(src, "t.yaml").unwrap().remove(0)
}

#[test]
fn plain_scalars_resolve_by_the_core_schema_and_quoted_ones_stay_strings() {
    let doc =
        one("a: 1\nb: \"1\"\nc: 1.5\nd: true\ne: ~\nf: 10s\ng: -3\nh: 1e3\ni: !!str 7\nj: 0x1F\n");
    let v = |k: &str| doc.get(k).unwrap().value.clone();
    assert_eq!(v("a"), Value::Int(1));
    assert_eq!(v("b"), Value::Str("1".into()));
    assert_eq!(v("c"), Value::Float(1.5));
    assert_eq!(v("d"), Value::Bool(true));
    assert_eq!(v("e"), Value::Null);
    assert_eq!(v("f"), Value::Str("10s".into()));
    assert_eq!(v("g"), Value::Int(-3));
    assert_eq!(v("h"), Value::Float(1000.0));
    assert_eq!(v("i"), Value::Str("7".into()));
    assert_eq!(v("j"), Value::Int(31));
}

#[test]
fn scalars_resolve_as_kubectl_resolves_them() {
    let doc = one("a: yes\nb: off\nc: 0777\nd: 1_000\ne: 0b101\nf: \"on\"\ng: 010.5\nh: -0x10\n");
    let v = |k: &str| doc.get(k).unwrap().value.clone();
    assert_eq!(v("a"), Value::Bool(true));
    assert_eq!(v("b"), Value::Bool(false));
    assert_eq!(v("c"), Value::Int(0o777));
    assert_eq!(v("d"), Value::Int(1000));
    assert_eq!(v("e"), Value::Int(5));
    assert_eq!(v("f"), Value::Str("on".into()));
    assert_eq!(v("g"), Value::Float(10.5));
    assert_eq!(v("h"), Value::Int(-16));
}

#[test]
fn istio_kinds_that_change_traffic_are_warned_others_noted() {
    let m = read(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: x}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.warnings[0].code, Some("MSH0014"));
    assert!(
        m.warnings[0].message.starts_with("skipped 1 EnvoyFilter"),
        "{}",
        m.warnings[0]
    );
    assert_eq!(m.notes.len(), 1);
    assert!(m.notes[0].message.contains("Deployment"));
}

#[test]
fn merge_keys_add_what_the_mapping_does_not_set() {
    let doc = one(
        "base: &b {interval: 10s, baseEjectionTime: 30s}\nod:\n  <<: *b\n  interval: 1s\nboth:\n  <<: [*b, {maxEjectionPercent: 50}]\n",
    );
    let od = doc.get("od").unwrap();
    assert_eq!(od.get("interval").unwrap().value, Value::Str("1s".into()));
    assert_eq!(
        od.get("baseEjectionTime").unwrap().value,
        Value::Str("30s".into())
    );
    assert!(od.get("<<").is_none());
    let both = doc.get("both").unwrap();
    assert_eq!(
        both.get("maxEjectionPercent").unwrap().value,
        Value::Int(50)
    );
    assert!(
        parse("a:\n  <<: 3\n", "t.yaml")
            .unwrap_err()
            .message
            .contains("merge key")
    );
    // Quoted, it is an ordinary key.
    let q = one("\"<<\": x\n");
    assert_eq!(q.get("<<").unwrap().value, Value::Str("x".into()));
}

#[test]
fn every_node_knows_its_line_and_column() {
    let doc = one("spec:\n  http:\n  - timeout: 5s\n");
    let http = doc.get("spec").unwrap().get("http").unwrap();
    let Value::Seq(items) = &http.value else {
        panic!()
    };
    assert_eq!(items[0].at, LineCol { line: 3, column: 5 });
    let Value::Map(e) = &items[0].value else {
        panic!()
    };
    assert_eq!(e[0].key_at, LineCol { line: 3, column: 5 });
}

#[test]
fn anchors_and_aliases_copy_the_anchored_node() {
    let doc = one("a: &x {k: 1}\nb: *x\n");
    assert_eq!(doc.get("a").unwrap().value, doc.get("b").unwrap().value);
}

#[test]
fn a_duplicate_key_is_an_error_naming_both_lines() {
    let e = parse("a: 1\nb: 2\na: 3\n", "t.yaml").unwrap_err();
    assert_eq!(e.location, Some(LineCol { line: 3, column: 1 }));
    assert!(
        e.message.contains("duplicate key `a` (first at line 1)"),
        "{e}"
    );
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = parse(&src, "t.yaml").unwrap_err();
    assert!(e.message.contains("aliases expand to more than"), "{e}");
}

#[test]
fn tabs_as_indentation_are_a_located_error() {
    let e = parse("a:\n\tb: 1\n", "t.yaml").unwrap_err();
    assert_eq!(e.file.as_deref(), Some("t.yaml"));
    assert_eq!(e.location.map(|l| l.line), Some(2));
}

#[test]
fn deep_nesting_is_refused() {
    let src = "[".repeat(200) + &"]".repeat(200);
    let e = parse(&src, "t.yaml").unwrap_err();
    assert!(e.message.contains("nesting deeper"), "{e}");
}

#[test]
fn index_free_paths_drop_indices() {
    assert_eq!(index_free("http[12].route[0].x"), "http[].route[].x");
}
