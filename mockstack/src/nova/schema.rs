//! Request-body validation the way Nova does it: JSON Schema (the subset Nova's schemas use), the first error in schema order, worded like Python `jsonschema` and wrapped in Nova's "Invalid input for field/attribute ..." message.
//!
//! Nova validates with `jsonschema.Draft202012Validator` and raises the *first* error that
//! `iter_errors` yields, so keyword order matters: schemas here are `serde_json` objects with
//! preserved key order, written in the same order as Nova's `schemas/*.py`. Python `repr`
//! is reproduced for the values quoted in messages.

use std::collections::VecDeque;

use regex::Regex;
use serde_json::Value;

/// One validation error: where (the JSON path) and jsonschema's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub path: VecDeque<String>,
    /// Python `str()` of the failing instance.
    pub value: String,
    pub message: String,
    /// Set when a `name` format check failed: Nova reports its own message instead.
    pub invalid_name: bool,
}

impl SchemaError {
    /// Nova's `ValidationError` detail for a request body.
    pub fn body_detail(&self) -> String {
        if self.invalid_name {
            return self.message.clone();
        }
        match self.path.back() {
            Some(field) => {
                format!("Invalid input for field/attribute {field}. Value: {}. {}", self.value, self.message)
            }
            None => self.message.clone(),
        }
    }
}

/// Validates `instance` against `schema`, returning the first error in jsonschema's order.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), SchemaError> {
    match first_error(schema, instance) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn error(instance: &Value, message: String) -> SchemaError {
    SchemaError { path: VecDeque::new(), value: py_str(instance), message, invalid_name: false }
}

fn first_error(schema: &Value, instance: &Value) -> Option<SchemaError> {
    let Value::Object(keywords) = schema else { return None };
    for (keyword, arg) in keywords {
        let found = match keyword.as_str() {
            "type" => check_type(arg, instance),
            "enum" => check_enum(arg, instance),
            "const" => (arg != instance).then(|| error(instance, format!("{} was expected", py_repr(arg)))),
            "properties" => check_properties(arg, instance),
            "patternProperties" => check_pattern_properties(arg, instance),
            "additionalProperties" => check_additional(arg, keywords, instance),
            "required" => check_required(arg, instance),
            "items" => check_items(arg, instance),
            "minItems" | "maxItems" => check_item_count(keyword, arg, instance),
            "minProperties" | "maxProperties" => check_property_count(keyword, arg, instance),
            "minLength" | "maxLength" => check_length(keyword, arg, instance),
            "pattern" => check_pattern(arg, keywords.get("x-regex"), instance),
            "minimum" | "maximum" => check_bound(keyword, arg, instance),
            "format" => check_format(arg, instance),
            "oneOf" => check_one_of(arg, instance),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn is_type(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn check_type(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let types: Vec<&str> = match arg {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    if types.iter().any(|t| is_type(t, instance)) {
        return None;
    }
    let names: Vec<String> = types.iter().map(|t| py_repr_str(t)).collect();
    Some(error(instance, format!("{} is not of type {}", py_repr(instance), names.join(", "))))
}

fn check_enum(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let options = arg.as_array()?;
    // Python compares True == 1, but Nova's enums never mix bools and numbers.
    if options.iter().any(|o| o == instance) {
        return None;
    }
    Some(error(instance, format!("{} is not one of {}", py_repr(instance), py_repr(arg))))
}

fn check_properties(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::Object(props), Value::Object(obj)) = (arg, instance) else { return None };
    for (name, sub) in props {
        if let Some(child) = obj.get(name)
            && let Some(mut e) = first_error(sub, child)
        {
            e.path.push_front(name.clone());
            return Some(e);
        }
    }
    None
}

/// A schema pattern, compiled once per process: the schemas are static and every request is checked against them
/// (compiling on each request was 2.5% of a matrix run's CPU).
fn compiled(pattern: &str) -> Option<Regex> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Option<Regex>>>> =
        std::sync::OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    cache.entry(pattern.to_string()).or_insert_with(|| Regex::new(pattern).ok()).clone()
}

fn check_pattern_properties(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::Object(patterns), Value::Object(obj)) = (arg, instance) else { return None };
    for (pattern, sub) in patterns {
        let re = compiled(pattern)?;
        for (name, child) in obj {
            if re.is_match(name)
                && let Some(mut e) = first_error(sub, child)
            {
                e.path.push_front(name.clone());
                return Some(e);
            }
        }
    }
    None
}

fn check_additional(arg: &Value, keywords: &serde_json::Map<String, Value>, instance: &Value) -> Option<SchemaError> {
    let Value::Object(obj) = instance else { return None };
    let declared = keywords.get("properties").and_then(Value::as_object);
    let patterns: Vec<(String, Regex)> = keywords
        .get("patternProperties")
        .and_then(Value::as_object)
        .map(|p| p.keys().filter_map(|k| compiled(k).map(|re| (k.clone(), re))).collect())
        .unwrap_or_default();
    let mut extras: Vec<&String> = obj
        .keys()
        .filter(|k| !declared.is_some_and(|d| d.contains_key(*k)) && !patterns.iter().any(|(_, re)| re.is_match(k)))
        .collect();
    if extras.is_empty() {
        return None;
    }
    match arg {
        Value::Bool(false) => {
            extras.sort();
            let joined: Vec<String> = extras.iter().map(|e| py_repr_str(e)).collect();
            let message = if patterns.is_empty() {
                let verb = if extras.len() == 1 { "was" } else { "were" };
                format!("Additional properties are not allowed ({} {verb} unexpected)", joined.join(", "))
            } else {
                let verb = if extras.len() == 1 { "does" } else { "do" };
                let mut names: Vec<&String> = patterns.iter().map(|(k, _)| k).collect();
                names.sort();
                let regexes: Vec<String> = names.iter().map(|p| py_repr_str(p)).collect();
                format!("{} {verb} not match any of the regexes: {}", joined.join(", "), regexes.join(", "))
            };
            Some(error(instance, message))
        }
        Value::Object(_) => {
            for name in extras {
                if let Some(mut e) = first_error(arg, &obj[name]) {
                    e.path.push_front(name.clone());
                    return Some(e);
                }
            }
            None
        }
        _ => None,
    }
}

fn check_required(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::Array(names), Value::Object(obj)) = (arg, instance) else { return None };
    names
        .iter()
        .filter_map(Value::as_str)
        .find(|n| !obj.contains_key(*n))
        .map(|n| error(instance, format!("{} is a required property", py_repr_str(n))))
}

fn check_items(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let Value::Array(items) = instance else { return None };
    for (i, item) in items.iter().enumerate() {
        if let Some(mut e) = first_error(arg, item) {
            e.path.push_front(i.to_string());
            return Some(e);
        }
    }
    None
}

fn check_item_count(keyword: &str, arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::Array(items), Some(limit)) = (instance, arg.as_u64()) else { return None };
    let n = items.len() as u64;
    let message = match keyword {
        "minItems" if n < limit => {
            if limit == 1 {
                "should be non-empty"
            } else {
                "is too short"
            }
        }
        "maxItems" if n > limit => {
            if limit == 0 {
                "is expected to be empty"
            } else {
                "is too long"
            }
        }
        _ => return None,
    };
    Some(error(instance, format!("{} {message}", py_repr(instance))))
}

fn check_property_count(keyword: &str, arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::Object(map), Some(limit)) = (instance, arg.as_u64()) else { return None };
    let n = map.len() as u64;
    let message = match keyword {
        "minProperties" if n < limit => {
            if limit == 1 {
                "should be non-empty"
            } else {
                "does not have enough properties"
            }
        }
        "maxProperties" if n > limit => {
            if limit == 0 {
                "is expected to be empty"
            } else {
                "has too many properties"
            }
        }
        _ => return None,
    };
    Some(error(instance, format!("{} {message}", py_repr(instance))))
}

fn check_length(keyword: &str, arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::String(s), Some(limit)) = (instance, arg.as_u64()) else { return None };
    let n = s.chars().count() as u64;
    let message = match keyword {
        "minLength" if n < limit => {
            if limit == 1 {
                "should be non-empty"
            } else {
                "is too short"
            }
        }
        "maxLength" if n > limit => {
            if limit == 0 {
                "is expected to be empty"
            } else {
                "is too long"
            }
        }
        _ => return None,
    };
    Some(error(instance, format!("{} {message}", py_repr(instance))))
}

/// `x-regex` stands in for a Python pattern the `regex` crate cannot compile (look-arounds);
/// the message still quotes the original pattern.
fn check_pattern(arg: &Value, substitute: Option<&Value>, instance: &Value) -> Option<SchemaError> {
    let (Value::String(s), Some(pattern)) = (instance, arg.as_str()) else { return None };
    let effective = substitute.and_then(Value::as_str).unwrap_or(pattern);
    let re = compiled(effective)?;
    // Python's re.search: the pattern may match anywhere unless anchored.
    if re.is_match(s) {
        return None;
    }
    Some(error(instance, format!("{} does not match {}", py_repr(instance), py_repr_str(pattern))))
}

/// Nova's own `minimum`/`maximum`: strings holding numbers are compared as numbers.
fn check_bound(keyword: &str, arg: &Value, instance: &Value) -> Option<SchemaError> {
    let limit = arg.as_f64()?;
    let (number, shown) = match instance {
        Value::Number(n) => (n.as_f64()?, instance.clone()),
        Value::String(s) => {
            if let Ok(i) = s.trim().parse::<i64>() {
                (i as f64, Value::from(i))
            } else if let Ok(f) = s.trim().parse::<f64>() {
                (f, Value::from(f))
            } else {
                return None;
            }
        }
        _ => return None,
    };
    let (bad, words) = match keyword {
        "minimum" => (number < limit, "less than the minimum"),
        _ => (number > limit, "greater than the maximum"),
    };
    bad.then(|| error(instance, format!("{} is {words} of {}", py_repr(&shown), py_repr(arg))))
}

fn check_format(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let (Value::String(s), Some(format)) = (instance, arg.as_str()) else { return None };
    let ok = match format {
        "uuid" => is_uuid_like(s),
        "name" => {
            if !is_valid_name(s) {
                return Some(SchemaError {
                    path: VecDeque::new(),
                    value: s.clone(),
                    message: "An invalid 'name' value was provided. The name must be: printable characters. \
                              Can not start or end with whitespace."
                        .into(),
                    invalid_name: true,
                });
            }
            true
        }
        "base64" => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    (!ok).then(|| error(instance, format!("{} is not a {}", py_repr(instance), py_repr_str(format))))
}

fn check_one_of(arg: &Value, instance: &Value) -> Option<SchemaError> {
    let options = arg.as_array()?;
    let valid = options.iter().filter(|o| first_error(o, instance).is_none()).count();
    match valid {
        1 => None,
        0 => Some(error(instance, format!("{} is not valid under any of the given schemas", py_repr(instance)))),
        _ => Some(error(instance, format!("{} is valid under each of {}", py_repr(instance), py_repr(arg)))),
    }
}

/// `oslo_utils.uuidutils.is_uuid_like`: 32 hex digits, hyphens anywhere, any case.
pub fn is_uuid_like(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) && uuid::Uuid::parse_str(s).is_ok()
}

/// Nova's `valid_name_regex`: printable characters (no `C*`, no `Z*` but `Zs`), not starting
/// or ending with a space.
pub fn is_valid_name(s: &str) -> bool {
    static PRINTABLE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let printable = PRINTABLE.get_or_init(|| Regex::new(r"^[^\p{C}\p{Zl}\p{Zp}]*$").expect("static regex"));
    let edge_ok = |c: Option<char>| c.is_none_or(|c| !c.is_whitespace());
    printable.is_match(s) && edge_ok(s.chars().next()) && edge_ok(s.chars().last())
}

use crate::python::{py_repr, py_repr_str, py_str};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detail(schema: Value, instance: Value) -> String {
        validate(&schema, &instance).unwrap_err().body_detail()
    }

    #[test]
    fn messages_match_python_jsonschema() {
        let schema = json!({
            "type": "object",
            "properties": {"server": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "format": "name", "minLength": 1, "maxLength": 255},
                    "flavorRef": {"type": ["string", "integer"], "minLength": 1},
                    "min_count": {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1},
                    "networks": {"oneOf": [{"type": "array"}, {"type": "string", "enum": ["none", "auto"]}]},
                },
                "required": ["name", "flavorRef"],
                "additionalProperties": false,
            }},
            "required": ["server"],
            "additionalProperties": false,
        });
        assert_eq!(detail(schema.clone(), json!({})), "'server' is a required property");
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": "a"}})),
            "Invalid input for field/attribute server. Value: {'name': 'a'}. 'flavorRef' is a required property"
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": 5, "flavorRef": "1"}})),
            "Invalid input for field/attribute name. Value: 5. 5 is not of type 'string'"
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": "", "flavorRef": "1"}})),
            "Invalid input for field/attribute name. Value: . '' should be non-empty"
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": " x", "flavorRef": "1"}})),
            "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace."
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": "a", "flavorRef": "1", "min_count": "0"}})),
            "Invalid input for field/attribute min_count. Value: 0. 0 is less than the minimum of 1"
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": "a", "flavorRef": "1", "networks": "some"}})),
            "Invalid input for field/attribute networks. Value: some. 'some' is not valid under any of the given schemas"
        );
        assert_eq!(
            detail(schema.clone(), json!({"server": {"name": "a", "flavorRef": "1", "zz": 1, "b": null}})),
            "Invalid input for field/attribute server. Value: {'name': 'a', 'flavorRef': '1', 'zz': 1, 'b': None}. \
             Additional properties are not allowed ('b', 'zz' were unexpected)"
        );
    }

    #[test]
    fn uuids_and_names() {
        assert!(is_uuid_like("0E44CC9C-E052-415D-AFBF-469B0D384170"));
        assert!(is_uuid_like("0e44cc9ce052415dafbf469b0d384170"));
        assert!(!is_uuid_like("m1.tiny"));
        assert!(is_valid_name("win 2012 ü"));
        assert!(!is_valid_name("tab\tinside"));
        assert!(!is_valid_name("trailing "));
    }
}
