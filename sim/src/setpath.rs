//! Setting a field of an experiment by path, for `--set PATH=VALUE` and for
//! `[sweep]` keys.
//!
//! A path is dot-separated. Table keys are followed as they are; in an array
//! of tables a segment selects the element whose `name` is that segment
//! (`destinationRule.backend.trafficPolicy…`), or the element at that index
//! (`virtualService.reviews.http.1.route.0.weight`). Missing tables along the
//! path are created, so a field that the file leaves to its default can be
//! set too.

use toml::{Table, Value};

/// Why a path could not be set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("--set {path}: {why}")]
pub struct SetError {
    /// The path.
    pub path: String,
    /// What went wrong and what to do.
    pub why: String,
}

/// Parses `VALUE` as TOML (`5`, `1.5`, `true`, `"text"`, `[1, 2]`), or as a
/// bare string when it is not TOML (`300s`, `ROUND_ROBIN`).
pub fn parse_value(text: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {text}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(text.to_owned())),
        Err(_) => Value::String(text.to_owned()),
    }
}

/// The value at `path` in `doc`, following the same steps as [`set`]
/// (an index, else the element named so); `None` when it is not there.
pub fn get<'a>(doc: &'a Table, path: &str) -> Option<&'a Value> {
    let mut segs = path.split('.');
    let mut cur = doc.get(segs.next()?)?;
    for seg in segs {
        cur = match cur {
            Value::Table(t) => t.get(seg)?,
            Value::Array(a) => match seg.parse::<usize>() {
                Ok(i) => a.get(i)?,
                Err(_) => a
                    .iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(seg))?,
            },
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the field at `path` (a table key or an array element), so the
/// file leaves it to its default: `--set PATH=off`. Removing what is not
/// there is not an error.
pub fn remove(doc: &mut Table, path: &str) -> Result<(), SetError> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let container = match parent {
        None => {
            doc.remove(last);
            return Ok(());
        }
        Some(p) => match get_mut(doc, p) {
            Some(v) => v,
            None => return Ok(()),
        },
    };
    match container {
        Value::Table(t) => {
            t.remove(last);
        }
        Value::Array(a) => {
            let i = last.parse::<usize>().ok().or_else(|| {
                a.iter()
                    .position(|v| v.get("name").and_then(Value::as_str) == Some(last))
            });
            if let Some(i) = i.filter(|i| *i < a.len()) {
                a.remove(i);
            }
        }
        _ => {
            return Err(SetError {
                path: path.to_owned(),
                why: format!("`{last}` is not inside a table"),
            });
        }
    }
    Ok(())
}

fn get_mut<'a>(doc: &'a mut Table, path: &str) -> Option<&'a mut Value> {
    let mut segs = path.split('.');
    let mut cur = doc.get_mut(segs.next()?)?;
    for seg in segs {
        cur = match cur {
            Value::Table(t) => t.get_mut(seg)?,
            Value::Array(a) => match seg.parse::<usize>() {
                Ok(i) => a.get_mut(i)?,
                Err(_) => a
                    .iter_mut()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(seg))?,
            },
            _ => return None,
        };
    }
    Some(cur)
}

/// Sets `path` in `doc` to `value`.
pub fn set(doc: &mut Table, path: &str, value: Value) -> Result<(), SetError> {
    let mut root = Value::Table(std::mem::take(doc));
    let result = set_in(&mut root, path, value);
    if let Value::Table(t) = root {
        *doc = t;
    }
    result
}

fn set_in(root: &mut Value, path: &str, value: Value) -> Result<(), SetError> {
    let fail = |why: String| SetError {
        path: path.to_owned(),
        why,
    };
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(fail(
            "expected a dot-separated path such as load.qps".to_owned(),
        ));
    }
    let (last, parents) = segs
        .split_last()
        .ok_or_else(|| fail("empty path".to_owned()))?;
    let mut cur = root;
    for (i, seg) in parents.iter().enumerate() {
        let next_is_index = segs.get(i + 1).is_some_and(|n| n.parse::<usize>().is_ok());
        cur = step(cur, seg, next_is_index).map_err(|w| fail(format!("at `{seg}`: {w}")))?;
    }
    match cur {
        Value::Table(t) => {
            t.insert((*last).to_owned(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| fail(format!("`{last}` is not an index of the array")))?;
            let len = a.len();
            let slot = a
                .get_mut(i)
                .ok_or_else(|| fail(format!("index {i} is past the end ({len} elements)")))?;
            *slot = value;
            Ok(())
        }
        _ => Err(fail(format!("`{last}` is not inside a table"))),
    }
}

fn step<'a>(cur: &'a mut Value, seg: &str, next_is_index: bool) -> Result<&'a mut Value, String> {
    match cur {
        Value::Table(t) => Ok(t.entry(seg.to_owned()).or_insert_with(|| {
            if next_is_index {
                Value::Array(Vec::new())
            } else {
                Value::Table(Table::new())
            }
        })),
        Value::Array(a) => {
            if let Ok(i) = seg.parse::<usize>() {
                let len = a.len();
                return a
                    .get_mut(i)
                    .ok_or_else(|| format!("index {i} is past the end ({len} elements)"));
            }
            let names: Vec<String> = a
                .iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect();
            a.iter_mut()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(seg))
                .ok_or_else(|| format!("no element named \"{seg}\" (names: {})", names.join(", ")))
        }
        other => Err(format!(
            "expected a table or an array, found a {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_removes_a_field_by_path_and_names_elements() {
        let mut t: Table = toml::from_str(
            "[[destinationRule]]\nname = \"backend\"\nhost = \"backend\"\n[destinationRule.trafficPolicy.outlierDetection]\ninterval = \"10s\"\n",
        )
        .unwrap();
        remove(
            &mut t,
            "destinationRule.backend.trafficPolicy.outlierDetection",
        )
        .unwrap();
        assert!(
            get(&t, "destinationRule.backend.trafficPolicy")
                .unwrap()
                .get("outlierDetection")
                .is_none()
        );
        remove(&mut t, "destinationRule.nosuch.x").unwrap();
        remove(&mut t, "destinationRule.backend").unwrap();
        assert_eq!(t["destinationRule"].as_array().unwrap().len(), 0);
    }

    fn doc() -> Table {
        toml::from_str(
            r#"
duration = "300s"
[load]
qps = 1000
[[destinationRule]]
name = "backend"
host = "backend"
[[virtualService]]
name = "reviews"
[[virtualService.http]]
route = [{ weight = 90 }, { weight = 10 }]
"#,
        )
        .unwrap()
    }

    #[test]
    fn sets_plain_keys_named_elements_and_indices() {
        let mut d = doc();
        set(&mut d, "load.qps", parse_value("5000")).unwrap();
        set(&mut d, "duration", parse_value("3000s")).unwrap();
        set(
            &mut d,
            "destinationRule.backend.trafficPolicy.outlierDetection.consecutive5xxErrors",
            parse_value("3"),
        )
        .unwrap();
        set(
            &mut d,
            "virtualService.reviews.http.0.route.1.weight",
            parse_value("20"),
        )
        .unwrap();
        assert_eq!(d["load"]["qps"].as_integer(), Some(5000));
        assert_eq!(d["duration"].as_str(), Some("3000s"));
        assert_eq!(
            d["destinationRule"][0]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"]
                .as_integer(),
            Some(3)
        );
        assert_eq!(
            d["virtualService"][0]["http"][0]["route"][1]["weight"].as_integer(),
            Some(20)
        );
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let mut d = doc();
        let e = set(&mut d, "destinationRule.frontend.host", parse_value("x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--set destinationRule.frontend.host: at `frontend`: no element named \"frontend\" (names: backend)"
        );
    }
}
