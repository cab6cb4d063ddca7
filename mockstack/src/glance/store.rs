//! Glance's tables and the rules on images themselves: creating, showing, patching, tagging, (de)activating and deleting them, with the status transitions Glance allows.
//!
//! Handlers in `api.rs` stay thin: they turn HTTP into calls on [`GlanceState`] with a
//! [`Viewer`], and other mockstack modules (Nova's snapshot, the compute host) use the in-process
//! methods. The other rooms add to `GlanceState`: `list_query.rs` (listing), `members.rs`,
//! `image_data.rs` (uploads and downloads); `policy.rs` holds who may do what.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::model::{GlanceError, Image, ImageStatus, Member, MemberStatus, Visibility};
use super::patch::{self, Change, Dialect, PatchVerb};
use super::policy::{Viewer, can_change, can_see, check_visibility_policy, is_member};
use super::schema;
use crate::clock::{Clock, ClockMode};

/// Glance's `image_size_cap` default: 1 TiB.
pub const DEFAULT_SIZE_CAP: u64 = 1 << 40;

/// Keys the create body may not carry at all (`_disallowed_properties`).
const DISALLOWED: [&str; 5] = ["direct_url", "self", "file", "schema", "stores"];
/// Core keys of a create body (`_base_properties`); everything else is an extra property.
const BASE: [&str; 17] = [
    "checksum",
    "created_at",
    "container_format",
    "disk_format",
    "id",
    "min_disk",
    "min_ram",
    "name",
    "size",
    "virtual_size",
    "status",
    "tags",
    "owner",
    "updated_at",
    "visibility",
    "protected",
    "os_hidden",
];
/// Core keys `new_image` refuses (the domain factory's `_readonly_properties`).
const FACTORY_READONLY: [&str; 8] =
    ["created_at", "updated_at", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size"];
/// Extra-property names the domain factory refuses.
const FACTORY_RESERVED: [&str; 8] =
    ["owner", "locations", "deleted", "deleted_at", "direct_url", "self", "file", "schema"];
/// Attributes of Glance's domain image: patching them sets the attribute, removing them is refused.
const ATTRIBUTES: [&str; 19] = [
    "id",
    "name",
    "status",
    "visibility",
    "os_hidden",
    "min_disk",
    "min_ram",
    "protected",
    "locations",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "disk_format",
    "container_format",
    "size",
    "virtual_size",
    "tags",
    "created_at",
];

/// One image with its members, as the tables keep it.
pub(super) struct ImageRecord {
    pub(super) image: Image,
    pub(super) members: BTreeMap<String, Member>,
    /// Creation order, to order images created within the same clock tick.
    pub(super) seq: u64,
}

#[derive(Default)]
pub(super) struct Tables {
    pub(super) images: HashMap<String, ImageRecord>,
    next_seq: u64,
}

/// What every clone of a [`GlanceState`] shares.
struct GlanceStateInner {
    dir: PathBuf,
    clock: RwLock<Arc<Clock>>,
    size_cap: RwLock<u64>,
    tables: Mutex<Tables>,
}

/// Glance's state: image records, members and the data directory. Cheap to clone.
#[derive(Clone)]
pub struct GlanceState {
    inner: Arc<GlanceStateInner>,
}

pub(super) fn forbidden(msg: impl Into<String>) -> GlanceError {
    GlanceError::Forbidden(msg.into())
}

pub(super) fn bad(msg: impl Into<String>) -> GlanceError {
    GlanceError::BadRequest(msg.into())
}

/// The largest value Glance stores in an integer column (a 4-byte INT): `_validate_db_int` refuses more.
const MAX_DB_INT: i128 = (1 << 31) - 1;

/// A `min_disk`/`min_ram` value as Glance takes it: the schema has let through an integer (or a float without a
/// fraction, which jsonschema counts as one); negative is refused by the domain model, past a 4-byte INT by the
/// database layer.
fn int_value(value: &Value, param: &str) -> Result<u64, GlanceError> {
    let n: i128 = match (value.as_i64(), value.as_u64(), value.as_f64()) {
        (Some(n), _, _) => i128::from(n),
        (None, Some(n), _) => i128::from(n),
        // Saturates past i128's range, which is past the limit all the same.
        (None, None, Some(f)) if f.fract() == 0.0 => f as i128,
        _ => return Err(bad(format!("Invalid value '{value}' for parameter '{param}': must be an integer"))),
    };
    if n < 0 {
        return Err(bad(format!("Invalid value '{n}' for parameter '{param}': Cannot be a negative value")));
    }
    if n > MAX_DB_INT {
        return Err(bad(format!("'{param}' value out of range, must not exceed {MAX_DB_INT}.")));
    }
    Ok(u64::try_from(n).expect("at most 2^31 - 1"))
}

fn opt_string(value: &Value) -> Option<String> {
    value.as_str().map(String::from)
}

impl GlanceState {
    /// A Glance keeping its image data under `dir` (created if missing).
    pub fn new(dir: &Path) -> std::io::Result<GlanceState> {
        std::fs::create_dir_all(dir)?;
        Ok(GlanceState {
            inner: Arc::new(GlanceStateInner {
                dir: dir.to_path_buf(),
                clock: RwLock::new(Arc::new(Clock::new(ClockMode::Real))),
                size_cap: RwLock::new(DEFAULT_SIZE_CAP),
                tables: Mutex::new(Tables::default()),
            }),
        })
    }

    /// Shares the mockstack's clock (every timestamp comes from it) and sets `image_size_cap`.
    pub fn configure(&self, clock: Arc<Clock>, size_cap: u64) {
        *self.inner.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
        *self.inner.size_cap.write().unwrap_or_else(|e| e.into_inner()) = size_cap;
    }

    pub fn size_cap(&self) -> u64 {
        *self.inner.size_cap.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn now(&self) -> Timestamp {
        self.inner.clock.read().unwrap_or_else(|e| e.into_inner()).now()
    }

    pub(super) fn tables(&self) -> MutexGuard<'_, Tables> {
        self.inner.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn final_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(id)
    }

    pub(super) fn partial_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.partial"))
    }

    // ----- in-process API -----

    /// Every image record (id and name), whoever owns it: what a test checks for leftovers.
    pub fn inventory(&self) -> Vec<(String, Option<String>)> {
        let tables = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(u64, String, Option<String>)> =
            tables.images.values().map(|r| (r.seq, r.image.id.clone(), r.image.name.clone())).collect();
        all.sort();
        all.into_iter().map(|(_, id, name)| (id, name)).collect()
    }

    /// A clone of the record, whoever owns it.
    pub fn image(&self, id: &str) -> Option<Image> {
        self.tables().images.get(id).map(|r| r.image.clone())
    }

    /// The active image a compute host would attach: by id, else by exact name among images
    /// visible to `project_id` (own, public, community, accepted shared); newest first.
    pub fn find_visible(&self, name_or_id: &str, project_id: &str) -> Option<Image> {
        let tables = self.tables();
        let listable = |r: &ImageRecord| {
            let image = &r.image;
            image.status == ImageStatus::Active
                && (image.owner.as_deref() == Some(project_id)
                    || matches!(image.visibility, Visibility::Public | Visibility::Community)
                    || (image.visibility == Visibility::Shared
                        && is_member(r, project_id, Some(MemberStatus::Accepted))))
        };
        if let Some(r) = tables.images.get(name_or_id).filter(|r| listable(r)) {
            return Some(r.image.clone());
        }
        tables
            .images
            .values()
            .filter(|r| listable(r) && r.image.name.as_deref() == Some(name_or_id))
            .max_by_key(|r| (r.image.created_at, r.seq))
            .map(|r| r.image.clone())
    }

    /// The data file of an active image.
    pub fn data_path(&self, id: &str) -> Option<PathBuf> {
        let tables = self.tables();
        let record = tables.images.get(id)?;
        (record.image.status == ImageStatus::Active).then(|| self.final_path(id)).filter(|p| p.is_file())
    }

    /// Creates an image as `POST /v2/images` would for a member of `owner` (Nova's snapshot uses it);
    /// `fields` is the JSON body.
    pub fn create_image(&self, owner: &str, fields: Map<String, Value>) -> Result<Image, GlanceError> {
        self.create(&Viewer::member_of(owner), fields)
    }

    /// Moves an image to `status` if Glance allows that transition.
    pub fn set_status(&self, id: &str, status: ImageStatus) -> Result<(), GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record = tables.images.get_mut(id).ok_or_else(|| GlanceError::no_image(id))?;
        transition(&mut record.image, status)?;
        record.image.updated_at = now;
        Ok(())
    }

    /// Deletes an image and its data (a protected image refuses, as in Glance).
    pub fn delete_image(&self, id: &str) -> Result<(), GlanceError> {
        self.delete(&Viewer::cloud_admin(), id)
    }

    // ----- API operations -----

    /// `POST /v2/images`: Glance's deserializer checks, its policies, then the domain factory's.
    pub fn create(&self, viewer: &Viewer, mut body: Map<String, Value>) -> Result<Image, GlanceError> {
        if let Some(key) = DISALLOWED.iter().find(|k| body.contains_key(**k)) {
            return Err(forbidden(format!("Attribute '{key}' is read-only.")));
        }
        schema::validate_image(&body).map_err(GlanceError::BadRequest)?;
        let tags = body.remove("tags");
        let mut core = Map::new();
        for key in BASE {
            if let Some(v) = body.remove(key) {
                core.insert(key.to_string(), v);
            }
        }
        for key in body.keys() {
            if key.chars().count() > 255 {
                return Err(bad("Custom property should not be greater than 255 characters."));
            }
            if patch::RESERVED.contains(&key.as_str()) || key.starts_with(patch::RESERVED_NAMESPACE) {
                return Err(forbidden(format!("Attribute '{key}' is reserved.")));
            }
        }
        if !viewer.writer && !viewer.admin {
            return Err(GlanceError::policy("add_image"));
        }
        let owner = match core.remove("owner") {
            Some(v) => opt_string(&v),
            None => Some(viewer.project_id.clone()),
        };
        if !viewer.admin && owner.as_deref() != Some(viewer.project_id.as_str()) {
            return Err(forbidden(format!(
                "You are not permitted to create images owned by '{}'.",
                owner.as_deref().unwrap_or("None")
            )));
        }
        let visibility = match core.remove("visibility") {
            Some(v) => v.as_str().and_then(|v| v.parse().ok()).unwrap_or(Visibility::Shared),
            None => Visibility::Shared,
        };
        check_visibility_policy(visibility, viewer)?;
        if let Some(key) = FACTORY_READONLY.iter().find(|k| core.contains_key(**k)) {
            return Err(forbidden(format!("Attribute '{key}' is read-only.")));
        }
        if let Some(key) = FACTORY_RESERVED.iter().find(|k| body.contains_key(**k)) {
            return Err(forbidden(format!("Attribute '{key}' is reserved.")));
        }
        let min_disk = core.get("min_disk").map(|v| int_value(v, "min_disk")).transpose()?.unwrap_or(0);
        let min_ram = core.get("min_ram").map(|v| int_value(v, "min_ram")).transpose()?.unwrap_or(0);
        let id = core.get("id").and_then(opt_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = self.now();
        let image = Image {
            id: id.clone(),
            name: core.get("name").and_then(opt_string),
            status: ImageStatus::Queued,
            visibility,
            owner,
            disk_format: core.get("disk_format").and_then(opt_string),
            container_format: core.get("container_format").and_then(opt_string),
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            min_disk,
            min_ram,
            protected: core.get("protected").and_then(Value::as_bool).unwrap_or(false),
            os_hidden: core.get("os_hidden").and_then(Value::as_bool).unwrap_or(false),
            tags: tags
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(opt_string).collect())
                .unwrap_or_default(),
            properties: body.into_iter().filter_map(|(k, v)| opt_string(&v).map(|v| (k, v))).collect(),
            created_at: now,
            updated_at: now,
        };
        let mut tables = self.tables();
        if tables.images.contains_key(&id) {
            return Err(GlanceError::Conflict(format!("Image ID {id} already exists!")));
        }
        let seq = tables.next_seq;
        tables.next_seq += 1;
        tables.images.insert(id, ImageRecord { image: image.clone(), members: BTreeMap::new(), seq });
        Ok(image)
    }

    /// `GET /v2/images/{id}`.
    pub fn show(&self, viewer: &Viewer, id: &str) -> Result<Image, GlanceError> {
        let tables = self.tables();
        tables
            .images
            .get(id)
            .filter(|r| can_see(r, viewer))
            .map(|r| r.image.clone())
            .ok_or_else(|| GlanceError::no_image(id))
    }

    /// `PATCH /v2/images/{id}` with already-parsed changes; all apply or none.
    pub fn update(&self, viewer: &Viewer, id: &str, changes: &[Change]) -> Result<Image, GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record =
            tables.images.get_mut(id).filter(|r| can_see(r, viewer)).ok_or_else(|| GlanceError::no_image(id))?;
        let mut image = record.image.clone();
        for change in changes {
            apply_change(&mut image, change, viewer)?;
        }
        if !changes.is_empty() {
            image.updated_at = now;
            record.image = image;
        }
        Ok(record.image.clone())
    }

    /// `DELETE /v2/images/{id}`.
    pub fn delete(&self, viewer: &Viewer, id: &str) -> Result<(), GlanceError> {
        let mut tables = self.tables();
        let record = tables
            .images
            .get(id)
            .filter(|r| can_see(r, viewer))
            .ok_or_else(|| GlanceError::NotFound(format!("Failed to find image {id} to delete")))?;
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy("delete_image"));
        }
        if record.image.protected {
            return Err(forbidden(format!("Image {id} is protected and cannot be deleted.")));
        }
        tables.images.remove(id);
        drop(tables);
        let _ = std::fs::remove_file(self.final_path(id));
        Ok(())
    }

    /// `PUT /v2/images/{id}/tags/{tag}`.
    pub fn add_tag(&self, viewer: &Viewer, id: &str, tag: &str) -> Result<(), GlanceError> {
        if tag.chars().count() > 255 {
            let mut body = Map::new();
            body.insert("tags".into(), Value::Array(vec![Value::String(tag.to_string())]));
            let reason = schema::validate_image(&body).err().unwrap_or_default();
            return Err(bad(format!("Could not update image: {reason}")));
        }
        self.change_tags(viewer, id, |tags| {
            tags.insert(tag.to_string());
            true
        })
    }

    /// `DELETE /v2/images/{id}/tags/{tag}`.
    pub fn remove_tag(&self, viewer: &Viewer, id: &str, tag: &str) -> Result<(), GlanceError> {
        self.change_tags(viewer, id, |tags| tags.remove(tag))
    }

    fn change_tags(
        &self,
        viewer: &Viewer,
        id: &str,
        edit: impl FnOnce(&mut BTreeSet<String>) -> bool,
    ) -> Result<(), GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record = tables
            .images
            .get_mut(id)
            .filter(|r| can_see(r, viewer))
            .ok_or_else(|| GlanceError::NotFound(format!("Image {id} not found.")))?;
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy("modify_image"));
        }
        if !edit(&mut record.image.tags) {
            return Err(GlanceError::NotFound("The resource could not be found.".into()));
        }
        record.image.updated_at = now;
        Ok(())
    }

    /// `POST /v2/images/{id}/actions/deactivate` and `.../reactivate`.
    pub fn set_active(&self, viewer: &Viewer, id: &str, active: bool) -> Result<(), GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record =
            tables.images.get_mut(id).filter(|r| can_see(r, viewer)).ok_or_else(|| GlanceError::no_image(id))?;
        let action = if active { "reactivate" } else { "deactivate" };
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy(action));
        }
        let (from, to) = if active {
            (ImageStatus::Deactivated, ImageStatus::Active)
        } else {
            (ImageStatus::Active, ImageStatus::Deactivated)
        };
        match record.image.status {
            s if s == to => return Ok(()),
            s if s == from => record.image.status = to,
            s => return Err(forbidden(format!("Not allowed to {action} image in status '{s}'"))),
        }
        record.image.updated_at = now;
        Ok(())
    }
}

pub(super) fn transition(image: &mut Image, to: ImageStatus) -> Result<(), GlanceError> {
    let from = image.status;
    if !from.can_become(to) {
        return Err(GlanceError::Conflict(format!("Image status transition from {from} to {to} is not allowed")));
    }
    if matches!(from, ImageStatus::Queued | ImageStatus::Uploading)
        && matches!(to, ImageStatus::Saving | ImageStatus::Active | ImageStatus::Importing)
    {
        let missing: Vec<&str> = [("disk_format", &image.disk_format), ("container_format", &image.container_format)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        match missing.len() {
            0 => {}
            1 => return Err(bad(format!("Property {} must be set prior to saving data.", missing[0]))),
            _ => return Err(bad(format!("Properties {} must be set prior to saving data.", missing.join(", ")))),
        }
    }
    if to == ImageStatus::Queued {
        image.size = None;
        image.virtual_size = None;
    }
    image.status = to;
    Ok(())
}

fn apply_change(image: &mut Image, change: &Change, viewer: &Viewer) -> Result<(), GlanceError> {
    let root = change.root().to_string();
    if root == "locations" {
        let verb = match change.op {
            PatchVerb::Add => "add",
            PatchVerb::Remove => "remove",
            PatchVerb::Replace => {
                if change.value.as_ref().is_some_and(|v| v.as_array().is_some_and(Vec::is_empty)) {
                    return Err(forbidden("Cannot set locations to empty list."));
                }
                "update"
            }
        };
        return Err(forbidden(format!("It's not allowed to {verb} locations if locations are invisible.")));
    }
    let value = change.value.clone().unwrap_or(Value::Null);
    if change.op == PatchVerb::Replace && root == "owner" && !viewer.admin {
        return Err(forbidden("Owner can't be updated by non admin."));
    }
    if root == "visibility"
        && let Some(v) = value.as_str().and_then(|v| v.parse().ok())
    {
        check_visibility_policy(v, viewer)?;
    }
    if !can_change(image, viewer) {
        return Err(GlanceError::policy("modify_image"));
    }
    let is_attribute = ATTRIBUTES.contains(&root.as_str());
    match change.op {
        PatchVerb::Remove => {
            if is_attribute {
                return Err(forbidden(format!("Property {root} may not be removed.")));
            }
            if image.properties.remove(&root).is_none() {
                return Err(GlanceError::Conflict(format!("Property {root} does not exist.")));
            }
        }
        PatchVerb::Replace if !is_attribute && !image.properties.contains_key(&root) => {
            return Err(GlanceError::Conflict(format!("Property {root} does not exist.")));
        }
        PatchVerb::Add
            if change.dialect == Dialect::Draft4 && (is_attribute || image.properties.contains_key(&root)) =>
        {
            return Err(GlanceError::Conflict(format!("Property {root} already present.")));
        }
        PatchVerb::Add | PatchVerb::Replace => {
            if is_attribute {
                set_attribute(image, &root, &value)?;
            } else {
                match value {
                    Value::String(s) => {
                        image.properties.insert(root, s);
                    }
                    _ => {
                        // Only schema-declared custom properties (kernel_id...) may be null.
                        image.properties.remove(&root);
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_attribute(image: &mut Image, key: &str, value: &Value) -> Result<(), GlanceError> {
    match key {
        "name" => image.name = opt_string(value),
        "visibility" => {
            image.visibility = value
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("Visibility must be one of \"community\", \"public\", \"private\", or \"shared\""))?
        }
        "os_hidden" => image.os_hidden = value.as_bool().unwrap_or(false),
        "protected" => image.protected = value.as_bool().unwrap_or(false),
        "min_disk" => image.min_disk = int_value(value, "min_disk")?,
        "min_ram" => image.min_ram = int_value(value, "min_ram")?,
        "owner" => image.owner = opt_string(value),
        "disk_format" | "container_format" => {
            if !matches!(image.status, ImageStatus::Queued | ImageStatus::Importing) {
                return Err(forbidden(format!("Attribute {key} can be only replaced for a queued image.")));
            }
            if key == "disk_format" {
                image.disk_format = opt_string(value);
            } else {
                image.container_format = opt_string(value);
            }
        }
        "tags" => image.tags = value.as_array().map(|a| a.iter().filter_map(opt_string).collect()).unwrap_or_default(),
        other => return Err(forbidden(format!("Attribute '{other}' is read-only."))),
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::glance::list_query::ListQuery;
    use serde_json::json;

    pub(crate) fn glance() -> (tempfile::TempDir, GlanceState) {
        let dir = tempfile::tempdir().unwrap();
        let g = GlanceState::new(&dir.path().join("images")).unwrap();
        (dir, g)
    }

    pub(crate) fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn check_create(viewer: &Viewer, fields: Value, expected: Result<&str, &str>) {
        let (_dir, g) = glance();
        match (g.create(viewer, body(fields.clone())), expected) {
            (Ok(img), Ok(status)) => assert_eq!(img.status.to_string(), status),
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "for {fields}"),
            (got, want) => panic!("for {fields}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn create_follows_glance_rules() {
        let alice = Viewer::member_of("alpha");
        let reader = Viewer { project_id: "alpha".into(), admin: false, writer: false };
        let admin = Viewer { project_id: "admin".into(), admin: true, writer: true };
        check_create(&alice, json!({"name": "x"}), Ok("queued"));
        check_create(
            &alice,
            json!({"name": "x", "visibility": "public"}),
            Err("forbidden: You are not authorized to complete publicize_image action."),
        );
        check_create(&admin, json!({"name": "x", "visibility": "public", "owner": "beta"}), Ok("queued"));
        check_create(
            &alice,
            json!({"owner": "beta"}),
            Err("forbidden: You are not permitted to create images owned by 'beta'."),
        );
        check_create(
            &reader,
            json!({"name": "x"}),
            Err("forbidden: You are not authorized to complete add_image action."),
        );
        check_create(&alice, json!({"status": "active"}), Err("forbidden: Attribute 'status' is read-only."));
        check_create(&alice, json!({"self": "/x"}), Err("forbidden: Attribute 'self' is read-only."));
        check_create(&alice, json!({"os_glance_x": "1"}), Err("forbidden: Attribute 'os_glance_x' is reserved."));
        check_create(&alice, json!({"deleted": "1"}), Err("forbidden: Attribute 'deleted' is reserved."));
        check_create(&alice, json!({"locations": []}), Err("forbidden: Attribute 'locations' is reserved."));
        check_create(
            &alice,
            json!({"min_disk": -1}),
            Err("bad request: Invalid value '-1' for parameter 'min_disk': Cannot be a negative value"),
        );
        // Past a 4-byte INT, Glance's database layer refuses, whether an integer or a float without a fraction.
        check_create(&alice, json!({"min_disk": 2_147_483_647u64}), Ok("queued"));
        for too_big in [json!(2_147_483_648u64), json!(17_179_869_184u64), json!(1e30), json!(u64::MAX)] {
            check_create(
                &alice,
                json!({"min_disk": too_big}),
                Err("bad request: 'min_disk' value out of range, must not exceed 2147483647."),
            );
        }
        check_create(
            &alice,
            json!({"min_ram": 1e30}),
            Err("bad request: 'min_ram' value out of range, must not exceed 2147483647."),
        );
        check_create(
            &alice,
            json!({"k".repeat(256): "v"}),
            Err("bad request: Custom property should not be greater than 255 characters."),
        );
    }

    #[test]
    fn create_defaults_and_properties() {
        let (_dir, g) = glance();
        let img = g.create_image("alpha", body(json!({"name": "n", "k": "v", "tags": ["b", "a"]}))).unwrap();
        assert_eq!(img.visibility, Visibility::Shared);
        assert_eq!(img.owner.as_deref(), Some("alpha"));
        assert_eq!(img.properties.get("k").map(String::as_str), Some("v"));
        let j = img.to_json();
        assert_eq!(j["tags"], json!(["a", "b"]));
        assert_eq!(j["size"], Value::Null);
        assert_eq!(j["self"], json!(format!("/v2/images/{}", img.id)));
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("k"), "extra properties come first, as in Glance");
        let dup = g.create_image("alpha", body(json!({"id": img.id}))).unwrap_err();
        assert_eq!(dup.status(), 409);
    }

    #[test]
    fn visibility_and_membership() {
        let (_dir, g) = glance();
        let alice = Viewer::member_of("alpha");
        let bob = Viewer::member_of("beta");
        let private = g.create(&alice, body(json!({"visibility": "private"}))).unwrap();
        let shared = g.create(&alice, body(json!({"visibility": "shared"}))).unwrap();
        let community = g.create(&alice, body(json!({"visibility": "community"}))).unwrap();
        assert_eq!(g.show(&bob, &private.id).unwrap_err().status(), 404);
        assert_eq!(g.show(&bob, &shared.id).unwrap_err().status(), 404);
        assert!(g.show(&bob, &community.id).is_ok());
        let ids = |v: &Viewer, q: &[(&str, &str)]| {
            let params: Vec<(String, String)> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut ids: Vec<String> = g
                .list(v, &ListQuery::from_params(&params).unwrap())
                .unwrap()
                .images
                .into_iter()
                .map(|i| i.id)
                .collect();
            ids.sort();
            ids
        };
        assert!(ids(&bob, &[]).is_empty(), "community images are listed only on request");
        assert_eq!(ids(&bob, &[("visibility", "community")]), vec![community.id.clone()]);
        g.add_member(&alice, &shared.id, "beta").unwrap();
        assert!(g.show(&bob, &shared.id).is_ok(), "a pending member may see the image");
        assert!(ids(&bob, &[]).is_empty(), "but it is listed only once accepted");
        assert_eq!(ids(&bob, &[("member_status", "pending")]), vec![shared.id.clone()]);
        assert_eq!(g.update_member(&alice, &shared.id, "beta", "accepted").unwrap_err().status(), 403);
        g.update_member(&bob, &shared.id, "beta", "accepted").unwrap();
        assert_eq!(ids(&bob, &[]), vec![shared.id.clone()]);
        assert_eq!(
            g.add_member(&alice, &private.id, "beta").unwrap_err().to_string(),
            "forbidden: Only shared images have members."
        );
        assert_eq!(
            g.delete(&bob, &shared.id).unwrap_err().to_string(),
            "forbidden: You are not authorized to complete delete_image action."
        );
    }
}
