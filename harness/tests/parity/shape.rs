//! Comparing two recorded responses: status, the headers clients read, and the JSON shape with the values that legitimately differ normalised.
//!
//! Strings compare by type only (ids, times, hosts, URLs and messages differ between any two
//! clouds), except the enum-like fields of [`VALUE_FIELDS`], whose values clients branch on.
//! Booleans and the numbers of [`VALUE_FIELDS`] compare by value, other numbers by kind
//! (integer or float). `null` against a value is a nullability difference. Arrays compare
//! element shapes: the union of one side's elements against the union of the other's, by type
//! only, so a list that holds more items on one cloud (its built-in flavors) still compares;
//! elements with the same `name` on both sides also compare value by value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One response as recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub status: u16,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Value),
    /// Not JSON: only its length is kept.
    Bytes(usize),
}

/// Fields whose value (not just type) must match.
pub const VALUE_FIELDS: &[&str] = &[
    "status",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "disk_format",
    "container_format",
    "visibility",
    "image_type",
    "os_hash_algo",
    "type",
    "protocol",
    "title",
    "code",
    "interface",
    "rel",
    "OS-DCF:diskConfig",
    "min_disk",
    "min_ram",
    "vcpus",
    "ram",
    "disk",
    "ephemeral",
    "swap",
    "OS-FLV-EXT-DATA:ephemeral",
    "os-flavor-access:is_public",
];

/// Headers whose presence and form clients depend on.
pub const HEADERS: &[&str] =
    &["x-subject-token", "location", "openstack-api-version", "x-openstack-request-id", "content-type"];

/// One difference, at a field path like `body.server.status` or `header.location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: String,
    pub mock: String,
    pub real: String,
}

/// What a comparison found.
#[derive(Debug, Default)]
pub struct Comparison {
    pub fields: usize,
    pub differences: Vec<Difference>,
}

impl Comparison {
    fn differ(&mut self, field: impl Into<String>, mock: impl Into<String>, real: impl Into<String>) {
        self.differences.push(Difference { field: field.into(), mock: mock.into(), real: real.into() });
    }
}

/// Compares what mockstack answered with what the real service answered to the same request.
/// `normalise_url` turns a URL of either cloud into a cloud-independent form (for `Location`).
pub fn compare(mock: &Recorded, real: &Recorded, normalise_url: &dyn Fn(&str) -> String) -> Comparison {
    let mut out = Comparison::default();
    out.fields += 1;
    if mock.status != real.status {
        out.differ("status", mock.status.to_string(), real.status.to_string());
    }
    for name in HEADERS {
        out.fields += 1;
        let (m, r) = (mock.headers.get(*name), real.headers.get(*name));
        match (m, r) {
            (None, None) => {}
            (Some(m), None) => out.differ(format!("header.{name}"), m.clone(), "absent"),
            (None, Some(r)) => out.differ(format!("header.{name}"), "absent", r.clone()),
            (Some(m), Some(r)) => {
                let (nm, nr) = (normalise_header(name, m, normalise_url), normalise_header(name, r, normalise_url));
                if nm != nr {
                    out.differ(format!("header.{name}"), nm, nr);
                }
            }
        }
    }
    match (&mock.body, &real.body) {
        (Body::Json(m), Body::Json(r)) => compare_value("body", m, r, true, &mut out),
        (Body::Empty, Body::Empty) | (Body::Bytes(_), Body::Bytes(_)) => out.fields += 1,
        (m, r) => {
            out.fields += 1;
            out.differ("body", body_kind(m), body_kind(r));
        }
    }
    out
}

fn body_kind(body: &Body) -> String {
    match body {
        Body::Empty => "empty".into(),
        Body::Json(v) => format!("json {}", kind(v)),
        Body::Bytes(n) => format!("{n} bytes, not json"),
    }
}

fn normalise_header(name: &str, value: &str, normalise_url: &dyn Fn(&str) -> String) -> String {
    match name {
        "content-type" => value.split(';').next().unwrap_or("").trim().to_ascii_lowercase(),
        "location" => normalise_url(value),
        "x-openstack-request-id" => {
            let id_form = value.strip_prefix("req-").is_some_and(|rest| uuid::Uuid::parse_str(rest).is_ok());
            if id_form { "req-{uuid}".into() } else { format!("not req-{{uuid}}: {value}") }
        }
        "x-subject-token" => "{token}".into(),
        _ => value.to_string(),
    }
}

/// The JSON kind of a value: `null`, `bool`, `integer`, `float`, `string`, `array`, `object`.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn last_key(path: &str) -> &str {
    let tail = path.rsplit('.').next().unwrap_or(path);
    tail.split('[').next().unwrap_or(tail)
}

/// `values`: whether enum fields and booleans compare by value (not inside array unions).
fn compare_value(path: &str, mock: &Value, real: &Value, values: bool, out: &mut Comparison) {
    match (mock, real) {
        (Value::Object(m), Value::Object(r)) => {
            out.fields += 1;
            let keys: BTreeSet<&String> = m.keys().chain(r.keys()).collect();
            for key in keys {
                let child = format!("{path}.{key}");
                match (m.get(key), r.get(key)) {
                    (Some(mv), Some(rv)) => compare_value(&child, mv, rv, values, out),
                    (Some(mv), None) => {
                        out.fields += 1;
                        out.differ(child, format!("present ({})", kind(mv)), "absent");
                    }
                    (None, Some(rv)) => {
                        out.fields += 1;
                        out.differ(child, "absent", format!("present ({})", kind(rv)));
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(m), Value::Array(r)) => {
            out.fields += 1;
            let child = format!("{path}[]");
            match (m.is_empty(), r.is_empty()) {
                (true, true) => {}
                (true, false) => out.differ(child, "empty", format!("{} items", r.len())),
                (false, true) => out.differ(child, format!("{} items", m.len()), "empty"),
                (false, false) => {
                    let (um, ur) = (union(m), union(r));
                    compare_value(&child, &um, &ur, false, out);
                    let named = |items: &[Value], name: &Value| items.iter().find(|i| &i["name"] == name).cloned();
                    for item in m.iter().filter(|i| i["name"].is_string()) {
                        if let Some(other) = named(r, &item["name"]) {
                            compare_named_values(&child, item, &other, out);
                        }
                    }
                }
            }
        }
        (m, r) => {
            out.fields += 1;
            let (km, kr) = (kind(m), kind(r));
            let by_value = values && (matches!(m, Value::Bool(_)) || VALUE_FIELDS.contains(&last_key(path)));
            if km != kr || (by_value && m != r) {
                out.differ(path.to_string(), describe(m), describe(r));
            }
        }
    }
}

/// The value differences (enum fields, booleans) between two elements that name the same thing;
/// their shapes were compared through the unions already.
fn compare_named_values(path: &str, mock: &Value, real: &Value, out: &mut Comparison) {
    match (mock, real) {
        (Value::Object(m), Value::Object(r)) => {
            for (key, mv) in m {
                if let Some(rv) = r.get(key) {
                    compare_named_values(&format!("{path}.{key}"), mv, rv, out);
                }
            }
        }
        (Value::Array(_), _) | (_, Value::Array(_)) => {}
        (m, r) => {
            let by_value = matches!(m, Value::Bool(_)) || VALUE_FIELDS.contains(&last_key(path));
            if kind(m) == kind(r) && by_value && m != r {
                out.differ(path.to_string(), describe(m), describe(r));
            }
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("array of {}", a.len()),
        Value::Object(_) => "object".into(),
        other => other.to_string(),
    }
}

/// One value with the shape of every element: objects merge their keys (first value wins,
/// a `null` gives way to a value), anything else is the first element.
fn union(items: &[Value]) -> Value {
    let mut merged: Option<Value> = None;
    for item in items {
        merged = Some(match (merged, item) {
            (None, item) => item.clone(),
            (Some(Value::Object(mut acc)), Value::Object(next)) => {
                for (k, v) in next {
                    match acc.get(k) {
                        None | Some(Value::Null) => {
                            acc.insert(k.clone(), v.clone());
                        }
                        Some(_) => {}
                    }
                }
                Value::Object(acc)
            }
            (Some(acc), _) => acc,
        });
    }
    merged.unwrap_or(Value::Null)
}
