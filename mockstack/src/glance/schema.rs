//! Glance's JSON schemas (`/v2/schemas/image(s)`, `member(s)`) and the small jsonschema subset Glance validates request bodies with, giving jsonschema's own messages.

use serde_json::{Map, Value, json};

/// Disk formats Glance accepts by default (`[image_format] disk_formats`).
pub const DISK_FORMATS: [&str; 11] =
    ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"];
/// Container formats Glance accepts by default (`[image_format] container_formats`).
pub const CONTAINER_FORMATS: [&str; 8] = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"];

const UUID_PATTERN: &str = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

fn nullable_enum(values: &[&str]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(values.iter().map(|s| Value::String((*s).to_string())));
    Value::Array(v)
}

/// The `properties` of Glance's image schema: the base properties plus the custom ones a devstack
/// loads from `schema-image.json` (marked `is_base: false`).
fn image_properties() -> Value {
    json!({
        "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
        "status": {
            "type": "string", "readOnly": true, "description": "Status of the image",
            "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                     "pending_delete", "deactivated"]
        },
        "visibility": {
            "type": "string", "description": "Scope of image accessibility",
            "enum": ["community", "public", "private", "shared"]
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "description": "md5 hash of image contents.", "maxLength": 32},
        "os_hash_algo": {
            "type": ["null", "string"], "readOnly": true,
            "description": "Algorithm to calculate the os_hash_value", "maxLength": 64
        },
        "os_hash_value": {
            "type": ["null", "string"], "readOnly": true,
            "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
            "maxLength": 128
        },
        "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
        "container_format": {
            "type": ["null", "string"], "description": "Format of the container", "enum": nullable_enum(&CONTAINER_FORMATS)
        },
        "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": nullable_enum(&DISK_FORMATS)},
        "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
        "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
        "tags": {
            "type": "array", "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255}
        },
        "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
        "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
        "self": {"type": "string", "readOnly": true, "description": "An image self url"},
        "file": {"type": "string", "readOnly": true, "description": "An image file url"},
        "stores": {
            "type": "string", "readOnly": true,
            "description": "Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers."
        },
        "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
        "locations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"}
                },
                "required": ["url", "metadata"]
            },
            "description": "A set of URLs to access the image file kept in external store"
        },
        "kernel_id": {
            "type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": false,
            "description": "ID of image stored in Glance that should be used as the kernel when booting an AMI-style image."
        },
        "ramdisk_id": {
            "type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": false,
            "description": "ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image."
        },
        "instance_uuid": {
            "type": "string", "is_base": false,
            "description": "Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)"
        },
        "architecture": {
            "type": "string", "is_base": false,
            "description": "Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"
        },
        "os_distro": {
            "type": "string", "is_base": false,
            "description": "Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"
        },
        "os_version": {
            "type": "string", "is_base": false,
            "description": "Operating system version as specified by the distributor"
        }
    })
}

fn image_links() -> Value {
    json!([
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"}
    ])
}

/// `GET /v2/schemas/image`: a permissive schema (extra properties must be strings).
pub fn image_schema() -> Value {
    json!({
        "name": "image",
        "properties": image_properties(),
        "additionalProperties": {"type": "string"},
        "links": image_links(),
    })
}

/// `GET /v2/schemas/images`: the collection schema wrapping [`image_schema`].
pub fn images_schema() -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// `GET /v2/schemas/member`.
pub fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "image_id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
            "status": {"type": "string", "description": "The status of this image member", "enum": ["pending", "accepted", "rejected"]},
            "schema": {"type": "string", "readOnly": true}
        }
    })
}

/// `GET /v2/schemas/members`.
pub fn members_schema() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"}
        },
        "links": [{"rel": "describedby", "href": "{schema}"}]
    })
}

/// Validates an image body (or the one-property body a PATCH change builds) against the image
/// schema; the error is `Provided object does not match schema 'image': <jsonschema's str(e)>`.
pub fn validate_image(body: &Map<String, Value>) -> Result<(), String> {
    let properties = image_properties();
    let additional = json!({"type": "string"});
    for (key, value) in body {
        let (schema, schema_path) = match properties.get(key) {
            Some(s) => (s, format!("schema['properties'][{}]", py_repr_str(key))),
            None => (&additional, "schema['additionalProperties']".to_string()),
        };
        let instance_path = format!("instance[{}]", py_repr_str(key));
        if let Err(f) = validate_value(value, schema, &schema_path, &instance_path) {
            return Err(format!(
                "Provided object does not match schema 'image': {}\n\nFailed validating {} in {}\n\nOn {}:\n    {}",
                f.message,
                py_repr_str(f.keyword),
                f.schema_path,
                f.instance_path,
                py_repr(f.instance)
            ));
        }
    }
    Ok(())
}

struct Failure<'a> {
    message: String,
    keyword: &'static str,
    schema_path: String,
    instance_path: String,
    instance: &'a Value,
}

fn type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        // jsonschema counts 3.0 as an integer but never a boolean.
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn validate_value<'a>(
    value: &'a Value,
    schema: &Value,
    schema_path: &str,
    instance_path: &str,
) -> Result<(), Failure<'a>> {
    let fail = |keyword: &'static str, message: String| Failure {
        message,
        keyword,
        schema_path: schema_path.to_string(),
        instance_path: instance_path.to_string(),
        instance: value,
    };
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_matches(value, t)) {
            let names: Vec<String> = types.iter().map(|t| py_repr_str(t)).collect();
            return Err(fail("type", format!("{} is not of type {}", py_repr(value), names.join(", "))));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(fail(
            "enum",
            format!("{} is not one of {}", py_repr(value), py_repr(&Value::Array(allowed.clone()))),
        ));
    }
    if let (Some(max), Some(s)) = (schema.get("maxLength").and_then(Value::as_u64), value.as_str())
        && s.chars().count() as u64 > max
    {
        return Err(fail("maxLength", format!("{} is too long", py_repr(value))));
    }
    if let (Some(pattern), Some(s)) = (schema.get("pattern").and_then(Value::as_str), value.as_str()) {
        let matches = regex::Regex::new(pattern).map(|re| re.is_match(s)).unwrap_or(true);
        if !matches {
            return Err(fail("pattern", format!("{} does not match {}", py_repr(value), py_repr_str(pattern))));
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate_value(item, items, &format!("{schema_path}['items']"), &format!("{instance_path}[{i}]"))?;
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(fail("required", format!("{} is a required property", py_repr_str(name))));
                }
            }
        }
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (key, item) in object {
                if let Some(sub) = props.get(key) {
                    let k = py_repr_str(key);
                    validate_value(
                        item,
                        sub,
                        &format!("{schema_path}['properties'][{k}]"),
                        &format!("{instance_path}[{k}]"),
                    )?;
                }
            }
        }
    }
    Ok(())
}

use crate::python::{py_repr, py_repr_str};

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Value, expected: Option<&str>) {
        let map = body.as_object().expect("test bodies are objects").clone();
        match (validate_image(&map), expected) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.contains(want), "{e:?} does not contain {want:?}"),
            (got, want) => panic!("for {map:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn bodies_are_validated_like_jsonschema() {
        check(json!({"name": "x", "disk_format": "iso", "container_format": "bare", "min_ram": 3}), None);
        check(json!({"name": null, "tags": ["a"], "os_distro": "debian", "kernel_id": null}), None);
        check(json!({"name": 1}), Some("1 is not of type 'null', 'string'"));
        check(json!({"name": 1}), Some("On instance['name']:\n    1"));
        check(json!({"disk_format": "floppy"}), Some("'floppy' is not one of [None, 'ami', 'ari'"));
        check(json!({"visibility": "everyone"}), Some("'everyone' is not one of ['community', 'public'"));
        check(json!({"protected": "yes"}), Some("'yes' is not of type 'boolean'"));
        check(json!({"min_ram": true}), Some("True is not of type 'integer'"));
        check(json!({"tags": ["ok", 5]}), Some("5 is not of type 'string'"));
        check(json!({"tags": ["ok", 5]}), Some("On instance['tags'][1]"));
        check(json!({"custom": 5}), Some("Failed validating 'type' in schema['additionalProperties']"));
        check(json!({"id": "not-a-uuid"}), Some("'not-a-uuid' does not match '^([0-9a-fA-F]){8}"));
        check(json!({"name": "n".repeat(256)}), Some("is too long"));
        check(json!({"locations": [{"url": "x"}]}), Some("'metadata' is a required property"));
    }

    #[test]
    fn python_repr_matches_python() {
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!({"a": [1, null, false]})), "{'a': [1, None, False]}");
    }
}
