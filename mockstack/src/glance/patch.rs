//! Glance's JSON-patch dialects (`openstack-images-v2.1-json-patch` and the older v2.0 one): parsing and validating a PATCH body into changes, with Glance's messages.

use serde_json::{Map, Value};
use strum::IntoEnumIterator;

use super::model::GlanceError;
use super::schema;

/// The two media types Glance accepts on `PATCH /v2/images/{id}`.
pub const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";
pub const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";

/// Attributes no request may set (Glance's `_readonly_properties`).
pub const READONLY: [&str; 13] = [
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];
/// Keys reserved for Glance itself (`_reserved_properties`), plus the `os_glance` namespace.
pub const RESERVED: [&str; 3] = ["location", "deleted", "deleted_at"];
pub const RESERVED_NAMESPACE: &str = "os_glance";

/// What a JSON-patch change does (its `op`), as both dialects name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum PatchVerb {
    Add,
    Remove,
    Replace,
}

/// JSON-schema draft the dialect follows: v2.1 is draft 10 (`{"op": ..., "path": ...}`), v2.0 draft 4 (`{"add": path}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Draft10,
    Draft4,
}

impl Dialect {
    /// The dialect for a request's media type (parameters such as `charset` ignored), if Glance accepts it.
    pub fn from_content_type(content_type: &str) -> Option<Dialect> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            PATCH_V21 => Some(Dialect::Draft10),
            PATCH_V20 => Some(Dialect::Draft4),
            _ => None,
        }
    }
}

/// One validated change: `path` is the decoded JSON pointer (one element except for locations).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: PatchVerb,
    pub path: Vec<String>,
    pub value: Option<Value>,
    pub dialect: Dialect,
}

impl Change {
    pub fn root(&self) -> &str {
        self.path.first().map(String::as_str).unwrap_or("")
    }
}

fn bad(msg: impl Into<String>) -> GlanceError {
    GlanceError::BadRequest(msg.into())
}

/// Parses a decoded PATCH body as Glance's deserializer does, validating every change before any applies.
pub fn parse(body: &Value, dialect: Dialect) -> Result<Vec<Change>, GlanceError> {
    let Value::Array(raw_changes) = body else {
        return Err(bad("Request body must be a JSON array of operation objects."));
    };
    let mut changes = Vec::with_capacity(raw_changes.len());
    for raw in raw_changes {
        let Value::Object(raw) = raw else {
            return Err(bad("Operations must be JSON objects."));
        };
        let (op, op_name, pointer) = match dialect {
            Dialect::Draft10 => {
                let available = "add, remove, replace";
                let op_name = match raw.get("op") {
                    None | Some(Value::Null) => Err(bad(format!(
                        "Unable to find `op` in JSON Schema change. It must be one of the following: {available}."
                    )))?,
                    Some(v) => v.as_str().map(String::from).unwrap_or_else(|| v.to_string()),
                };
                let op = op_name.parse().map_err(|_| {
                    bad(format!("Invalid operation: `{op_name}`. It must be one of the following: {available}."))
                })?;
                let pointer = raw.get("path").ok_or_else(|| bad("Unable to find 'path' in JSON Schema change"))?;
                (op, op_name, pointer)
            }
            Dialect::Draft4 => {
                let present: Vec<PatchVerb> =
                    PatchVerb::iter().filter(|op| raw.contains_key(<&str>::from(op))).collect();
                let op = match present.as_slice() {
                    [one] => *one,
                    [] => Err(bad(
                        "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                    ))?,
                    _ => Err(bad(
                        "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                    ))?,
                };
                let name: &str = op.into();
                (op, name.to_string(), &raw[name])
            }
        };
        let pointer = pointer.as_str().ok_or_else(|| bad(format!("Pointer `{pointer}` does not start with \"/\".")))?;
        let path = decode_pointer(pointer)?;
        validate_path(op, &path)?;
        let value = if op == PatchVerb::Remove {
            None
        } else {
            Some(
                raw.get("value")
                    .cloned()
                    .ok_or_else(|| bad(format!("Operation \"{op_name}\" requires a member named \"value\".")))?,
            )
        };
        let change = Change { op, path, value, dialect };
        validate_change(&change)?;
        changes.push(change);
    }
    Ok(changes)
}

fn decode_pointer(pointer: &str) -> Result<Vec<String>, GlanceError> {
    if !pointer.starts_with('/') {
        return Err(bad(format!("Pointer `{pointer}` does not start with \"/\".")));
    }
    let rest = &pointer[1..];
    // Glance's `/\s*?/` test: an empty or blank segment between two slashes.
    let segments: Vec<&str> = rest.split('/').collect();
    let adjacent = segments.len() > 2 && segments[1..segments.len() - 1].iter().any(|seg| seg.trim().is_empty());
    if adjacent {
        return Err(bad(format!("Pointer `{pointer}` contains adjacent \"/\".")));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(bad(format!("Pointer `{pointer}` end with \"/\".")));
    }
    if rest.trim() == "/" {
        return Err(bad(format!("Pointer `{pointer}` does not contains valid token.")));
    }
    let bytes = pointer.as_bytes();
    let bad_tilde = bytes.iter().enumerate().any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
    if bad_tilde {
        return Err(bad(format!("Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence.")));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|part| part.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect())
}

fn validate_path(op: PatchVerb, path: &[String]) -> Result<(), GlanceError> {
    let depth = match (path.first().map(String::as_str), op) {
        (Some("locations"), PatchVerb::Add | PatchVerb::Remove) => 2,
        _ => 1,
    };
    if path.len() != depth {
        return Err(bad(format!("Invalid JSON pointer for this resource: '/{}'", path.join("/"))));
    }
    Ok(())
}

fn validate_change(change: &Change) -> Result<(), GlanceError> {
    let root = change.root();
    if READONLY.contains(&root) {
        return Err(GlanceError::Forbidden(format!("Attribute '{root}' is read-only.")));
    }
    if RESERVED.contains(&root) || root.starts_with(RESERVED_NAMESPACE) {
        return Err(GlanceError::Forbidden(format!("Attribute '{root}' is reserved.")));
    }
    let Some(value) = &change.value else { return Ok(()) };
    let partial = if change.path.len() == 1 {
        Some((root.to_string(), value.clone()))
    } else if root == "locations" {
        Some((root.to_string(), Value::Array(vec![value.clone()])))
    } else {
        None
    };
    if let Some((k, v)) = partial {
        let mut body = Map::new();
        body.insert(k, v);
        schema::validate_image(&body).map_err(GlanceError::BadRequest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value, dialect: Dialect, expected: Result<usize, &str>) {
        match (parse(&body, dialect), expected) {
            (Ok(changes), Ok(n)) => assert_eq!(changes.len(), n),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e} does not contain {want:?}"),
            (got, want) => panic!("for {body}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn patch_bodies_parse_like_glance() {
        use Dialect::*;
        check(json!([{"op": "replace", "path": "/name", "value": "x"}]), Draft10, Ok(1));
        check(json!([{"op": "add", "path": "/k", "value": "v"}, {"op": "remove", "path": "/k"}]), Draft10, Ok(2));
        check(json!([{"add": "/k", "value": "v"}]), Draft4, Ok(1));
        check(json!({"op": "add"}), Draft10, Err("bad request: Request body must be a JSON array"));
        check(json!(["x"]), Draft10, Err("Operations must be JSON objects."));
        check(json!([{"path": "/k"}]), Draft10, Err("Unable to find `op` in JSON Schema change"));
        check(json!([{"op": "move", "path": "/k"}]), Draft10, Err("Invalid operation: `move`"));
        check(json!([{"op": "add", "value": 1}]), Draft10, Err("Unable to find 'path' in JSON Schema change"));
        check(
            json!([{"op": "add", "path": "k", "value": "v"}]),
            Draft10,
            Err("Pointer `k` does not start with \"/\"."),
        );
        check(
            json!([{"op": "add", "path": "/a/b", "value": "v"}]),
            Draft10,
            Err("Invalid JSON pointer for this resource: '/a/b'"),
        );
        check(json!([{"op": "add", "path": "/a//b", "value": "v"}]), Draft10, Err("contains adjacent"));
        check(json!([{"op": "add", "path": "/k~2", "value": "v"}]), Draft10, Err("not part of a recognized escape"));
        check(
            json!([{"op": "add", "path": "/k"}]),
            Draft10,
            Err("Operation \"add\" requires a member named \"value\"."),
        );
        check(
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            Draft10,
            Err("forbidden: Attribute 'status' is read-only."),
        );
        check(json!([{"op": "remove", "path": "/os_glance_x"}]), Draft10, Err("Attribute 'os_glance_x' is reserved."));
        check(
            json!([{"op": "add", "path": "/deleted", "value": "1"}]),
            Draft10,
            Err("Attribute 'deleted' is reserved."),
        );
        check(json!([{"op": "add", "path": "/k", "value": 5}]), Draft10, Err("5 is not of type 'string'"));
        check(
            json!([{"op": "replace", "path": "/min_ram", "value": "big"}]),
            Draft10,
            Err("'big' is not of type 'integer'"),
        );
        check(json!([{"add": "/k", "remove": "/k"}]), Draft4, Err("must contain only one member"));
        check(json!([{"value": 1}]), Draft4, Err("must contain exactly one member"));
    }

    #[test]
    fn pointers_decode_escapes() {
        assert_eq!(decode_pointer("/a~1b~0c").unwrap(), vec!["a/b~c".to_string()]);
        assert_eq!(
            Dialect::from_content_type("application/openstack-images-v2.1-json-patch; charset=UTF-8"),
            Some(Dialect::Draft10)
        );
        assert_eq!(Dialect::from_content_type("application/json"), None);
    }
}
