//! Glance's tables and rules: creating, listing, patching and deleting images, members, uploads and downloads, with Glance's visibility and policy decisions.
//!
//! Handlers in `api.rs` stay thin: they turn HTTP into calls on [`GlanceState`] with a [`Viewer`],
//! and other mockstack modules (Nova's snapshot, the compute host) use the in-process methods.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::data::{self, CopyError, Digests};
use super::model::{GlanceError, Image, ImageStatus, Member, MemberStatus, Visibility};
use super::patch::{self, Change, Dialect, Op};
use super::schema;
use crate::clock::{Clock, ClockMode};

/// Glance's `image_size_cap` default: 1 TiB.
pub const DEFAULT_SIZE_CAP: u64 = 1 << 40;
/// `limit_param_default` and `api_limit_max`.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 1000;

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

/// Who is asking, as Glance's policies see a request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub project_id: String,
    pub admin: bool,
    /// Holds the member role (a reader may look but not change).
    pub writer: bool,
}

impl Viewer {
    /// A member of `project_id`, as in-process callers act.
    pub fn member_of(project_id: &str) -> Viewer {
        Viewer { project_id: project_id.to_string(), admin: false, writer: true }
    }
}

struct Record {
    image: Image,
    members: BTreeMap<String, Member>,
    /// Creation order, to order images created within the same clock tick.
    seq: u64,
}

#[derive(Default)]
struct Tables {
    images: HashMap<String, Record>,
    next_seq: u64,
}

struct Inner {
    dir: PathBuf,
    clock: RwLock<Arc<Clock>>,
    size_cap: RwLock<u64>,
    tables: Mutex<Tables>,
}

/// Glance's state: image records, members and the data directory. Cheap to clone.
#[derive(Clone)]
pub struct GlanceState {
    inner: Arc<Inner>,
}

fn forbidden(msg: impl Into<String>) -> GlanceError {
    GlanceError::Forbidden(msg.into())
}

fn bad(msg: impl Into<String>) -> GlanceError {
    GlanceError::BadRequest(msg.into())
}

fn is_member(record: &Record, project: &str, status: Option<MemberStatus>) -> bool {
    record.members.get(project).is_some_and(|m| status.is_none_or(|s| m.status == s))
}

/// Glance's `get_image` rule: admin, owner, public, community, or a member of a shared image.
fn can_see(record: &Record, viewer: &Viewer) -> bool {
    let image = &record.image;
    viewer.admin
        || image.owner.as_deref() == Some(viewer.project_id.as_str())
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || (image.visibility == Visibility::Shared && is_member(record, &viewer.project_id, None))
}

/// Glance's `modify_image`-style rule: admin, or a member of the owning project.
fn can_change(image: &Image, viewer: &Viewer) -> bool {
    viewer.admin || (viewer.writer && image.owner.as_deref() == Some(viewer.project_id.as_str()))
}

fn int_value(value: &Value, param: &str) -> Result<u64, GlanceError> {
    let n = value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)).unwrap_or(0);
    if n < 0 {
        return Err(bad(format!("Invalid value '{n}' for parameter '{param}': Cannot be a negative value")));
    }
    Ok(n as u64)
}

fn opt_string(value: &Value) -> Option<String> {
    value.as_str().map(String::from)
}

impl GlanceState {
    /// A Glance keeping its image data under `dir` (created if missing).
    pub fn new(dir: &Path) -> std::io::Result<GlanceState> {
        std::fs::create_dir_all(dir)?;
        Ok(GlanceState {
            inner: Arc::new(Inner {
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

    fn now(&self) -> Timestamp {
        self.inner.clock.read().unwrap_or_else(|e| e.into_inner()).now()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.inner.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn final_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(id)
    }

    fn partial_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.partial"))
    }

    // ----- in-process API -----

    /// A clone of the record, whoever owns it.
    /// Every image record (id and name), whoever owns it: what a test checks for leftovers.
    pub fn inventory(&self) -> Vec<(String, Option<String>)> {
        let tables = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(u64, String, Option<String>)> =
            tables.images.values().map(|r| (r.seq, r.image.id.clone(), r.image.name.clone())).collect();
        all.sort();
        all.into_iter().map(|(_, id, name)| (id, name)).collect()
    }

    pub fn image(&self, id: &str) -> Option<Image> {
        self.tables().images.get(id).map(|r| r.image.clone())
    }

    /// The active image a compute host would attach: by id, else by exact name among images
    /// visible to `project_id` (own, public, community, accepted shared); newest first.
    pub fn find_visible(&self, name_or_id: &str, project_id: &str) -> Option<Image> {
        let tables = self.tables();
        let listable = |r: &Record| {
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

    /// Imports data from a local file as an upload would: hashing it and setting
    /// `size`/`checksum`/`os_hash_*` and status `active`.
    pub fn upload_from_file(&self, id: &str, src: &Path) -> Result<Image, GlanceError> {
        let ticket = self.begin_upload(&Viewer { project_id: String::new(), admin: true, writer: true }, id)?;
        let digests = match data::copy_file(src, ticket.partial_path(), self.size_cap()) {
            Ok(d) => d,
            Err(CopyError::Io(e)) => return Err(GlanceError::Io(e)),
            Err(CopyError::TooLarge) => return Err(too_large()),
        };
        self.finish_upload(ticket, digests)
    }

    /// Deletes an image and its data (a protected image refuses, as in Glance).
    pub fn delete_image(&self, id: &str) -> Result<(), GlanceError> {
        self.delete(&Viewer { project_id: String::new(), admin: true, writer: true }, id)
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
            Some(v) => v.as_str().and_then(Visibility::parse).unwrap_or(Visibility::Shared),
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
        tables.images.insert(id, Record { image: image.clone(), members: BTreeMap::new(), seq });
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

    /// `GET /v2/images`.
    pub fn list(&self, viewer: &Viewer, query: &ListQuery) -> Result<ListPage, GlanceError> {
        let tables = self.tables();
        let mut matching: Vec<&Record> = tables.images.values().filter(|r| query.selects(r, viewer)).collect();
        let sort = query.effective_sort();
        matching.sort_by(|a, b| compare(a, b, &sort));
        if let Some(marker) = &query.marker {
            let marker_record =
                tables.images.get(marker).ok_or_else(|| bad(format!("No image found with ID {marker}")))?;
            if !can_see(marker_record, viewer) {
                return Err(forbidden(format!("Forbidding request, image {marker} not visible")));
            }
            matching.retain(|r| compare(r, marker_record, &sort) == Ordering::Greater);
        }
        matching.truncate(query.limit);
        let images: Vec<Image> = matching.iter().map(|r| r.image.clone()).collect();
        let next_marker =
            (!images.is_empty() && images.len() == query.limit).then(|| images[images.len() - 1].id.clone());
        Ok(ListPage { images, next_marker })
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

    // ----- members -----

    fn shared_record<'t>(tables: &'t mut Tables, viewer: &Viewer, id: &str) -> Result<&'t mut Record, GlanceError> {
        let record = tables
            .images
            .get_mut(id)
            .filter(|r| can_see(r, viewer))
            .ok_or_else(|| GlanceError::NotFound(format!("Image {id} not found.")))?;
        if record.image.visibility != Visibility::Shared {
            return Err(forbidden("Only shared images have members."));
        }
        Ok(record)
    }

    /// `GET /v2/images/{id}/members`: the owner sees every member, a member only itself.
    pub fn members(&self, viewer: &Viewer, id: &str) -> Result<Vec<Member>, GlanceError> {
        let mut tables = self.tables();
        let record = Self::shared_record(&mut tables, viewer, id)?;
        let owner = can_change(&record.image, viewer) || record.image.owner.as_deref() == Some(&viewer.project_id);
        Ok(record.members.values().filter(|m| owner || m.member_id == viewer.project_id).cloned().collect())
    }

    /// `POST /v2/images/{id}/members`.
    pub fn add_member(&self, viewer: &Viewer, id: &str, member_id: &str) -> Result<Member, GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record = Self::shared_record(&mut tables, viewer, id)?;
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy("add_member"));
        }
        if record.members.contains_key(member_id) {
            return Err(GlanceError::Conflict(format!("Member {member_id} is duplicated for image {id}")));
        }
        let member = Member {
            image_id: id.to_string(),
            member_id: member_id.to_string(),
            status: MemberStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        record.members.insert(member_id.to_string(), member.clone());
        Ok(member)
    }

    /// `GET /v2/images/{id}/members/{member_id}`.
    pub fn member(&self, viewer: &Viewer, id: &str, member_id: &str) -> Result<Member, GlanceError> {
        let mut tables = self.tables();
        let record = Self::shared_record(&mut tables, viewer, id)?;
        let allowed =
            viewer.admin || record.image.owner.as_deref() == Some(&viewer.project_id) || member_id == viewer.project_id;
        record.members.get(member_id).filter(|_| allowed).cloned().ok_or_else(|| {
            GlanceError::NotFound(format!("{member_id} not found in the member list of the image {id}."))
        })
    }

    /// `PUT /v2/images/{id}/members/{member_id}`: only the member itself answers.
    pub fn update_member(
        &self,
        viewer: &Viewer,
        id: &str,
        member_id: &str,
        status: &str,
    ) -> Result<Member, GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record = Self::shared_record(&mut tables, viewer, id)?;
        let member = record.members.get_mut(member_id).ok_or_else(|| {
            GlanceError::NotFound(format!("{member_id} not found in the member list of the image {id}."))
        })?;
        if !(viewer.admin || (viewer.writer && member_id == viewer.project_id)) {
            return Err(GlanceError::policy("modify_member"));
        }
        let status = MemberStatus::parse(status).ok_or_else(|| {
            bad("Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".".to_string())
        })?;
        member.status = status;
        member.updated_at = now;
        Ok(member.clone())
    }

    /// `DELETE /v2/images/{id}/members/{member_id}`.
    pub fn delete_member(&self, viewer: &Viewer, id: &str, member_id: &str) -> Result<(), GlanceError> {
        let mut tables = self.tables();
        let record = Self::shared_record(&mut tables, viewer, id)?;
        if !record.members.contains_key(member_id) {
            return Err(GlanceError::NotFound(format!("{member_id} not found in the member list of the image {id}.")));
        }
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy("delete_member"));
        }
        record.members.remove(member_id);
        Ok(())
    }

    // ----- data -----

    /// Moves a queued image to `saving` for an upload; dropping the ticket without
    /// [`GlanceState::finish_upload`] puts it back to `queued` and removes the partial file.
    pub fn begin_upload(&self, viewer: &Viewer, id: &str) -> Result<UploadTicket, GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let record =
            tables.images.get_mut(id).filter(|r| can_see(r, viewer)).ok_or_else(|| GlanceError::no_image(id))?;
        if !can_change(&record.image, viewer) {
            return Err(GlanceError::policy("upload_image"));
        }
        transition(&mut record.image, ImageStatus::Saving)?;
        record.image.updated_at = now;
        Ok(UploadTicket { glance: self.clone(), id: id.to_string(), partial: self.partial_path(id), done: false })
    }

    /// Records the digests of a completed upload and makes the image `active`.
    pub fn finish_upload(&self, mut ticket: UploadTicket, digests: Digests) -> Result<Image, GlanceError> {
        let now = self.now();
        let mut tables = self.tables();
        let Some(record) = tables.images.get_mut(&ticket.id).filter(|r| r.image.status == ImageStatus::Saving) else {
            drop(tables);
            let _ = std::fs::remove_file(&ticket.partial);
            ticket.done = true;
            return Err(GlanceError::Gone(format!(
                "Image {} could not be found after upload. The image may have been deleted during the upload, \
                 cleaning up the chunks uploaded.",
                ticket.id
            )));
        };
        let stored = self.final_path(&ticket.id);
        std::fs::rename(&ticket.partial, &stored)?;
        let image = &mut record.image;
        image.virtual_size = virtual_size(&stored, image.disk_format.as_deref(), digests.size);
        image.size = Some(digests.size);
        image.checksum = Some(digests.md5);
        image.os_hash_algo = Some("sha512".into());
        image.os_hash_value = Some(digests.sha512);
        image.status = ImageStatus::Active;
        image.updated_at = now;
        ticket.done = true;
        Ok(image.clone())
    }

    /// What `GET /v2/images/{id}/file` serves: the image, and its data file if it has data.
    pub fn download(&self, viewer: &Viewer, id: &str) -> Result<(Image, Option<PathBuf>), GlanceError> {
        let image = self.show(viewer, id)?;
        if image.status == ImageStatus::Deactivated && !viewer.admin {
            return Err(forbidden("The requested image has been deactivated. Image data download is forbidden."));
        }
        let path = self.final_path(id);
        let has_data = matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated) && path.is_file();
        Ok((image, has_data.then_some(path)))
    }

    /// Restores an interrupted upload: `saving` goes back to `queued` (clearing size) as Glance's `_restore` does.
    fn abort_upload(&self, id: &str, partial: &Path) {
        let _ = std::fs::remove_file(partial);
        let now = self.now();
        let mut tables = self.tables();
        if let Some(record) = tables.images.get_mut(id)
            && record.image.status == ImageStatus::Saving
        {
            record.image.status = ImageStatus::Queued;
            record.image.size = None;
            record.image.virtual_size = None;
            record.image.updated_at = now;
        }
    }
}

/// An upload in progress; see [`GlanceState::begin_upload`].
pub struct UploadTicket {
    glance: GlanceState,
    id: String,
    partial: PathBuf,
    done: bool,
}

impl UploadTicket {
    /// Where the data goes until the upload completes.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }
}

impl Drop for UploadTicket {
    fn drop(&mut self) {
        if !self.done {
            self.glance.abort_upload(&self.id, &self.partial);
        }
    }
}

/// The 413 Glance answers when data passes `image_size_cap`.
pub fn too_large() -> GlanceError {
    GlanceError::TooLarge("The incoming image is too large: The provided image is too large.".into())
}

fn transition(image: &mut Image, to: ImageStatus) -> Result<(), GlanceError> {
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

fn check_visibility_policy(visibility: Visibility, viewer: &Viewer) -> Result<(), GlanceError> {
    match visibility {
        Visibility::Public if !viewer.admin => Err(GlanceError::policy("publicize_image")),
        Visibility::Community if !(viewer.admin || viewer.writer) => Err(GlanceError::policy("communitize_image")),
        _ => Ok(()),
    }
}

fn apply_change(image: &mut Image, change: &Change, viewer: &Viewer) -> Result<(), GlanceError> {
    let root = change.root().to_string();
    if root == "locations" {
        let verb = match change.op {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => {
                if change.value.as_ref().is_some_and(|v| v.as_array().is_some_and(Vec::is_empty)) {
                    return Err(forbidden("Cannot set locations to empty list."));
                }
                "update"
            }
        };
        return Err(forbidden(format!("It's not allowed to {verb} locations if locations are invisible.")));
    }
    let value = change.value.clone().unwrap_or(Value::Null);
    if change.op == Op::Replace && root == "owner" && !viewer.admin {
        return Err(forbidden("Owner can't be updated by non admin."));
    }
    if root == "visibility"
        && let Some(v) = value.as_str().and_then(Visibility::parse)
    {
        check_visibility_policy(v, viewer)?;
    }
    if !can_change(image, viewer) {
        return Err(GlanceError::policy("modify_image"));
    }
    let is_attribute = ATTRIBUTES.contains(&root.as_str());
    match change.op {
        Op::Remove => {
            if is_attribute {
                return Err(forbidden(format!("Property {root} may not be removed.")));
            }
            if image.properties.remove(&root).is_none() {
                return Err(GlanceError::Conflict(format!("Property {root} does not exist.")));
            }
        }
        Op::Replace if !is_attribute && !image.properties.contains_key(&root) => {
            return Err(GlanceError::Conflict(format!("Property {root} does not exist.")));
        }
        Op::Add if change.dialect == Dialect::Draft4 && (is_attribute || image.properties.contains_key(&root)) => {
            return Err(GlanceError::Conflict(format!("Property {root} already present.")));
        }
        Op::Add | Op::Replace => {
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
                .and_then(Visibility::parse)
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

// ----- listing -----

/// Sort keys Glance accepts (`_available_sort_keys`).
pub const SORT_KEYS: [&str; 8] =
    ["name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// Which shared images a listing includes, by the caller's membership status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberFilter {
    Only(MemberStatus),
    All,
}

/// The visibility a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    Only(Visibility),
    All,
}

/// A parsed `GET /v2/images` query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    pub marker: Option<String>,
    pub member_status: MemberFilter,
    pub visibility: Option<VisibilityFilter>,
    pub tags: Vec<String>,
    pub os_hidden: bool,
    pub protected: Option<bool>,
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
    /// Filters on core columns (name, status, owner, formats, times, ...) or extra properties.
    pub filters: Vec<Filter>,
    pub sort: Vec<(String, SortDir)>,
}

/// One filter of a listing, with Glance's operators (`in:`, `eq:`, and comparisons on times).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A core column or an extra property equal to a value.
    Equals(String, String),
    /// `in:a,b,"c,d"`: one of the listed values (only on id, name, status and the formats).
    OneOf(String, Vec<String>),
    /// `created_at` or `updated_at` compared with a time.
    Time { key: String, op: TimeOp, at: Timestamp },
}

/// The comparison of a time filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Neq,
    Eq,
}

/// The columns on which Glance accepts the `in:` operator.
const IN_COLUMNS: [&str; 5] = ["name", "id", "status", "container_format", "disk_format"];

/// An ISO 8601 time as oslo's `parse_isotime` reads it; without an offset it is UTC.
fn parse_isotime(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>()
        .ok()
        .or_else(|| text.parse::<jiff::civil::DateTime>().ok().and_then(|t| jiff::tz::Offset::UTC.to_timestamp(t).ok()))
}

/// Glance's `split_filter_op`: `op:value`, or the whole text compared for equality when it has
/// no colon or is itself an ISO 8601 time.
fn split_filter_op(expression: &str) -> (&str, &str) {
    match expression.split_once(':') {
        Some(_) if parse_isotime(expression).is_some() => ("eq", expression),
        Some((op, value)) => (op, value),
        None => ("eq", expression),
    }
}

/// Glance's `split_filter_value_for_quotes`: comma-separated values, double quotes around a value
/// that holds commas.
fn split_filter_values(value: &str) -> Result<Vec<String>, GlanceError> {
    let bytes: Vec<char> = value.chars().collect();
    let mut open = false;
    for (i, c) in bytes.iter().enumerate() {
        if *c != '"' || (i > 0 && bytes[i - 1] == '\\') {
            continue;
        }
        if !open && i > 0 && bytes[i - 1] != ',' {
            return Err(bad(format!("Invalid filter value {value}. There is no comma before opening quotation mark.")));
        }
        if open && i + 1 != bytes.len() && bytes[i + 1] != ',' {
            return Err(bad(format!("Invalid filter value {value}. There is no comma after closing quotation mark.")));
        }
        open = !open;
    }
    if open {
        return Err(bad(format!("Invalid filter value {value}. The quote is not closed.")));
    }
    let mut values = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            // The closing quote is the first one not escaped by a backslash (escapes are kept, as Glance keeps them).
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|(_, c)| {
                    let closes = *c == '"' && !escaped;
                    escaped = *c == '\\' && !escaped;
                    closes
                })
                .map_or(quoted.len(), |(i, _)| i);
            values.push(quoted[..end].to_string());
            rest = quoted.get(end + 1..).unwrap_or("");
            rest = rest.strip_prefix(',').unwrap_or(rest);
        } else if let Some(after) = rest.strip_prefix(',') {
            values.push(String::new());
            rest = after;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            values.push(rest[..end].to_string());
            rest = rest.get(end + 1..).unwrap_or("");
        }
    }
    Ok(values)
}

fn parse_filter(key: &str, value: &str) -> Result<Filter, GlanceError> {
    if key == "created_at" || key == "updated_at" {
        let (op, time) = split_filter_op(value);
        let at = parse_isotime(time)
            .ok_or_else(|| bad(format!("Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation.")))?;
        let op = match op {
            "gt" => TimeOp::Gt,
            "gte" => TimeOp::Gte,
            "lt" => TimeOp::Lt,
            "lte" => TimeOp::Lte,
            "neq" => TimeOp::Neq,
            "eq" => TimeOp::Eq,
            other => return Err(bad(format!("Unable to filter by unknown operator '{other}'."))),
        };
        return Ok(Filter::Time { key: key.to_string(), op, at });
    }
    if IN_COLUMNS.contains(&key) {
        return match split_filter_op(value) {
            ("in", list) => Ok(Filter::OneOf(key.to_string(), split_filter_values(list)?)),
            ("eq", v) => Ok(Filter::Equals(key.to_string(), v.to_string())),
            (other, _) => Err(bad(format!("Unable to filter by unknown operator '{other}'."))),
        };
    }
    Ok(Filter::Equals(key.to_string(), value.to_string()))
}

impl Filter {
    fn selects(&self, image: &Image) -> bool {
        match self {
            Filter::Equals(k, v) => match column(image, k) {
                Some(col) => col.as_deref() == Some(v.as_str()),
                None => image.properties.get(k) == Some(v),
            },
            Filter::OneOf(k, values) => column(image, k).flatten().is_some_and(|col| values.contains(&col)),
            Filter::Time { key, op, at } => {
                let value = if key == "created_at" { image.created_at } else { image.updated_at };
                match op {
                    TimeOp::Gt => value > *at,
                    TimeOp::Gte => value >= *at,
                    TimeOp::Lt => value < *at,
                    TimeOp::Lte => value <= *at,
                    TimeOp::Neq => value != *at,
                    TimeOp::Eq => value == *at,
                }
            }
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub images: Vec<Image>,
    pub next_marker: Option<String>,
}

fn parse_dir(s: &str) -> Result<SortDir, GlanceError> {
    match s {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(bad(format!("Invalid sort direction: {other}"))),
    }
}

fn parse_sort_key(s: &str) -> Result<String, GlanceError> {
    if SORT_KEYS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(bad(format!("Invalid sort key: {s}. It must be one of the following: {}.", SORT_KEYS.join(", "))))
    }
}

/// Core columns a filter compares directly (other names filter extra properties).
fn column(image: &Image, key: &str) -> Option<Option<String>> {
    Some(match key {
        "id" => Some(image.id.clone()),
        "name" => image.name.clone(),
        "status" => Some(image.status.as_str().to_string()),
        "owner" => image.owner.clone(),
        "disk_format" => image.disk_format.clone(),
        "container_format" => image.container_format.clone(),
        "checksum" => image.checksum.clone(),
        "os_hash_algo" => image.os_hash_algo.clone(),
        "os_hash_value" => image.os_hash_value.clone(),
        "size" => image.size.map(|s| s.to_string()),
        "virtual_size" => image.virtual_size.map(|s| s.to_string()),
        "min_disk" => Some(image.min_disk.to_string()),
        "min_ram" => Some(image.min_ram.to_string()),
        _ => return None,
    })
}

impl ListQuery {
    /// Parses query parameters (in request order) as Glance's deserializer and controller do.
    pub fn from_params(params: &[(String, String)]) -> Result<ListQuery, GlanceError> {
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            marker: None,
            member_status: MemberFilter::Only(MemberStatus::Accepted),
            visibility: None,
            tags: Vec::new(),
            os_hidden: false,
            protected: None,
            size_min: None,
            size_max: None,
            filters: Vec::new(),
            sort: Vec::new(),
        };
        let has = |k: &str| params.iter().any(|(key, _)| key == k);
        let (mut sort_keys, mut sort_dirs) = (Vec::new(), Vec::new());
        if has("sort") && (has("sort_key") || has("sort_dir")) {
            return Err(bad("Old and new sorting syntax cannot be combined"));
        }
        for (key, value) in params {
            match key.as_str() {
                "limit" => {
                    let n: i64 = value.trim().parse().map_err(|_| bad("limit param must be an integer"))?;
                    if n < 0 {
                        return Err(bad("limit param must be positive"));
                    }
                    query.limit = (n as usize).min(MAX_LIMIT);
                }
                "marker" => query.marker = Some(value.clone()),
                "member_status" => {
                    query.member_status = match value.as_str() {
                        "all" => MemberFilter::All,
                        s => MemberFilter::Only(
                            MemberStatus::parse(s).ok_or_else(|| bad(format!("Invalid status: {s}")))?,
                        ),
                    }
                }
                "tag" => query.tags.push(value.trim().to_string()),
                "sort" => {
                    for part in value.trim().split(',') {
                        let (k, d) = part.split_once(':').unwrap_or((part, ""));
                        let d = if d.is_empty() { "desc" } else { d };
                        query.sort.push((parse_sort_key(k.trim())?, parse_dir(d.trim())?));
                    }
                }
                "sort_key" => sort_keys.push(parse_sort_key(value.trim())?),
                "sort_dir" => sort_dirs.push(parse_dir(value.trim())?),
                "visibility" if !value.is_empty() => {
                    query.visibility = Some(match value.as_str() {
                        "all" => VisibilityFilter::All,
                        v => VisibilityFilter::Only(
                            Visibility::parse(v).ok_or_else(|| bad(format!("Invalid visibility value: {v}")))?,
                        ),
                    })
                }
                "changes-since" if !value.is_empty() => {
                    return Err(bad("The \"changes-since\" filter is no longer available on v2."));
                }
                "os_hidden" => match value.to_lowercase().as_str() {
                    "true" => query.os_hidden = true,
                    "false" => query.os_hidden = false,
                    v => {
                        return Err(bad(format!(
                            "Invalid value '{v}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                },
                "protected" => match value.as_str() {
                    "true" => query.protected = Some(true),
                    "false" => query.protected = Some(false),
                    v => {
                        return Err(bad(format!(
                            "Invalid value '{v}' for 'protected' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                },
                "size_min" | "size_max" => {
                    let n: u64 = value
                        .trim()
                        .parse()
                        .map_err(|_| bad("Unable to filter on a range with a non-numeric value."))?;
                    if key == "size_min" {
                        query.size_min = Some(n);
                    } else {
                        query.size_max = Some(n);
                    }
                }
                _ => query.filters.push(parse_filter(key, value)?),
            }
        }
        if !has("sort") {
            if sort_dirs.len() > 1 && sort_dirs.len() != sort_keys.len() {
                return Err(bad("Number of sort dirs does not match the number of sort keys"));
            }
            if sort_keys.is_empty() {
                sort_keys.push("created_at".to_string());
            }
            for (i, key) in sort_keys.into_iter().enumerate() {
                let dir = sort_dirs.get(i).or(sort_dirs.first()).copied().unwrap_or(SortDir::Desc);
                query.sort.push((key, dir));
            }
        }
        Ok(query)
    }

    /// The sort keys with Glance's `created_at`, `id` tie-breakers appended.
    fn effective_sort(&self) -> Vec<(String, SortDir)> {
        let mut sort = self.sort.clone();
        let default_dir = if sort.len() == 1 { sort[0].1 } else { SortDir::Desc };
        for key in ["created_at", "id"] {
            if !sort.iter().any(|(k, _)| k == key) {
                sort.push((key.to_string(), default_dir));
            }
        }
        sort
    }

    fn selects(&self, record: &Record, viewer: &Viewer) -> bool {
        let image = &record.image;
        let own = image.owner.as_deref() == Some(viewer.project_id.as_str());
        let member_ok = match self.member_status {
            MemberFilter::All => is_member(record, &viewer.project_id, None),
            MemberFilter::Only(s) => is_member(record, &viewer.project_id, Some(s)),
        };
        let reachable = viewer.admin
            || own
            || matches!(image.visibility, Visibility::Public | Visibility::Community)
            || (image.visibility == Visibility::Shared && member_ok);
        let visibility_ok = match self.visibility {
            Some(VisibilityFilter::All) => true,
            Some(VisibilityFilter::Only(v)) => image.visibility == v,
            None => image.visibility != Visibility::Community || own,
        };
        reachable
            && visibility_ok
            && image.os_hidden == self.os_hidden
            && self.protected.is_none_or(|p| image.protected == p)
            && self.size_min.is_none_or(|min| image.size.is_some_and(|s| s >= min))
            && self.size_max.is_none_or(|max| image.size.is_some_and(|s| s <= max))
            && self.tags.iter().all(|t| image.tags.contains(t))
            && self.filters.iter().all(|f| f.selects(image))
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Text(Option<String>),
    Number(Option<u64>),
    Time(Timestamp, u64),
}

fn sort_value(record: &Record, key: &str) -> SortValue {
    let image = &record.image;
    match key {
        "name" => SortValue::Text(image.name.clone()),
        "status" => SortValue::Text(Some(image.status.as_str().to_string())),
        "container_format" => SortValue::Text(image.container_format.clone()),
        "disk_format" => SortValue::Text(image.disk_format.clone()),
        "size" => SortValue::Number(image.size),
        "created_at" => SortValue::Time(image.created_at, record.seq),
        "updated_at" => SortValue::Time(image.updated_at, record.seq),
        _ => SortValue::Text(Some(image.id.clone())),
    }
}

fn compare(a: &Record, b: &Record, sort: &[(String, SortDir)]) -> Ordering {
    for (key, dir) in sort {
        let ord = sort_value(a, key).cmp(&sort_value(b, key));
        let ord = if *dir == SortDir::Desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn glance() -> (tempfile::TempDir, GlanceState) {
        let dir = tempfile::tempdir().unwrap();
        let g = GlanceState::new(&dir.path().join("images")).unwrap();
        (dir, g)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn check_create(viewer: &Viewer, fields: Value, expected: Result<&str, &str>) {
        let (_dir, g) = glance();
        match (g.create(viewer, body(fields.clone())), expected) {
            (Ok(img), Ok(status)) => assert_eq!(img.status.as_str(), status),
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "for {fields}"),
            (got, want) => panic!("for {fields}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn filter_values_split_like_glance() {
        assert_eq!(split_filter_values("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_filter_values(r#""a,b",c"#).unwrap(), ["a,b", "c"]);
        assert_eq!(split_filter_values(r#"x,"q\"uote",y"#).unwrap(), ["x", r#"q\"uote"#, "y"]);
        assert_eq!(split_filter_values("a,,b").unwrap(), ["a", "", "b"]);
        assert!(split_filter_values(r#"a"b""#).unwrap_err().to_string().contains("no comma before"));
        assert!(split_filter_values(r#""a"b"#).unwrap_err().to_string().contains("no comma after"));
        assert!(split_filter_values(r#""a"#).unwrap_err().to_string().contains("not closed"));
    }

    #[test]
    fn list_filters_take_glances_operators() {
        let (_dir, g) = glance();
        let alice = Viewer::member_of("alpha");
        let ids: Vec<String> =
            ["one", "two", "three"].iter().map(|n| g.create(&alice, body(json!({"name": n}))).unwrap().id).collect();
        let names = |params: &[(&str, &str)]| -> Result<Vec<String>, String> {
            let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let query = ListQuery::from_params(&params).map_err(|e| e.to_string())?;
            let mut names: Vec<String> =
                g.list(&alice, &query).unwrap().images.into_iter().filter_map(|i| i.name).collect();
            names.sort();
            Ok(names)
        };
        let in_ids = format!("in:{},{}", ids[0], ids[2]);
        assert_eq!(names(&[("id", &in_ids)]).unwrap(), ["one", "three"]);
        assert_eq!(names(&[("name", "in:two,\"one\"")]).unwrap(), ["one", "two"]);
        assert_eq!(names(&[("name", "eq:two")]).unwrap(), ["two"]);
        assert_eq!(names(&[("status", "in:queued,active")]).unwrap(), ["one", "three", "two"]);
        assert!(names(&[("name", "like:t")]).unwrap_err().contains("Unable to filter by unknown operator 'like'."));
        assert_eq!(names(&[("created_at", "gte:2000-01-01T00:00:00Z")]).unwrap(), ["one", "three", "two"]);
        assert!(names(&[("created_at", "lt:2000-01-01T00:00:00")]).unwrap().is_empty());
        assert!(names(&[("updated_at", "gt:yesterday")]).unwrap_err().contains("Use ISO 8601 DateTime notation"));
        // Extra properties compare the whole value, colon and all.
        assert!(names(&[("os_distro", "in:ubuntu")]).unwrap().is_empty());
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
    fn upload_from_file_and_lookup() {
        let (dir, g) = glance();
        let src = dir.path().join("virtio.iso");
        std::fs::write(&src, b"driver bytes").unwrap();
        let img = g
            .create_image(
                "alpha",
                body(json!({"name": "virtio-win", "disk_format": "iso", "container_format": "bare"})),
            )
            .unwrap();
        assert!(g.find_visible("virtio-win", "alpha").is_none(), "a queued image is not attachable");
        let done = g.upload_from_file(&img.id, &src).unwrap();
        assert_eq!(done.status, ImageStatus::Active);
        assert_eq!(done.checksum, Some(data::digests_of(b"driver bytes").md5));
        assert_eq!(std::fs::read(g.data_path(&img.id).unwrap()).unwrap(), b"driver bytes");
        assert_eq!(g.find_visible("virtio-win", "alpha").map(|i| i.id), Some(img.id.clone()));
        assert!(g.find_visible("virtio-win", "beta").is_none(), "shared without membership is invisible");
        assert_eq!(g.upload_from_file(&img.id, &src).unwrap_err().status(), 409);
        g.delete_image(&img.id).unwrap();
        assert!(g.image(&img.id).is_none());
        assert!(!g.final_path(&img.id).exists());
    }

    #[test]
    fn upload_needs_formats_and_interrupted_uploads_restore_queued() {
        let (_dir, g) = glance();
        let alice = Viewer::member_of("alpha");
        let bare = g.create(&alice, body(json!({"name": "n"}))).unwrap();
        let err = g.begin_upload(&alice, &bare.id).err().unwrap();
        assert_eq!(
            err.to_string(),
            "bad request: Properties disk_format, container_format must be set prior to saving data."
        );
        let img = g.create(&alice, body(json!({"disk_format": "raw", "container_format": "bare"}))).unwrap();
        let ticket = g.begin_upload(&alice, &img.id).unwrap();
        std::fs::write(ticket.partial_path(), b"part").unwrap();
        let partial = ticket.partial_path().to_path_buf();
        assert_eq!(g.image(&img.id).unwrap().status, ImageStatus::Saving);
        assert_eq!(g.begin_upload(&alice, &img.id).err().unwrap().status(), 409);
        drop(ticket);
        assert_eq!(g.image(&img.id).unwrap().status, ImageStatus::Queued);
        assert!(!partial.exists());
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

    #[test]
    fn list_queries_parse_like_glance() {
        let p = |q: &[(&str, &str)]| {
            let params: Vec<(String, String)> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ListQuery::from_params(&params)
        };
        let err = |q: &[(&str, &str)]| p(q).unwrap_err().to_string();
        assert_eq!(p(&[]).unwrap().sort, vec![("created_at".to_string(), SortDir::Desc)]);
        assert_eq!(
            p(&[("sort", "name:asc,size")]).unwrap().sort,
            vec![("name".into(), SortDir::Asc), ("size".into(), SortDir::Desc)]
        );
        assert_eq!(
            p(&[("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc")]).unwrap().sort,
            vec![("name".into(), SortDir::Asc), ("size".into(), SortDir::Asc)]
        );
        assert_eq!(p(&[("limit", "5000")]).unwrap().limit, MAX_LIMIT);
        assert_eq!(err(&[("limit", "x")]), "bad request: limit param must be an integer");
        assert_eq!(err(&[("limit", "-1")]), "bad request: limit param must be positive");
        assert_eq!(
            err(&[("sort_key", "owner")]),
            "bad request: Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at."
        );
        assert_eq!(err(&[("sort_dir", "up")]), "bad request: Invalid sort direction: up");
        assert_eq!(
            err(&[("sort", "name"), ("sort_key", "name")]),
            "bad request: Old and new sorting syntax cannot be combined"
        );
        assert_eq!(
            err(&[("sort_key", "name"), ("sort_dir", "asc"), ("sort_dir", "desc"), ("sort_dir", "asc")]),
            "bad request: Number of sort dirs does not match the number of sort keys"
        );
        assert_eq!(err(&[("visibility", "everyone")]), "bad request: Invalid visibility value: everyone");
        assert_eq!(err(&[("member_status", "maybe")]), "bad request: Invalid status: maybe");
        assert_eq!(
            err(&[("os_hidden", "maybe")]),
            "bad request: Invalid value 'maybe' for 'os_hidden' filter. Valid values are 'true' or 'false'."
        );
        assert_eq!(err(&[("size_min", "big")]), "bad request: Unable to filter on a range with a non-numeric value.");
    }
}

/// The guest-visible size Glance's format inspector reports after an upload: the data size for
/// `raw`, the volume size of an ISO 9660 primary volume descriptor, the size in a qcow2 header,
/// and nothing for formats it does not read (or data too short to tell).
fn virtual_size(path: &std::path::Path, disk_format: Option<&str>, size: u64) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let read_at = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut file = std::fs::File::open(path).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    match disk_format? {
        "raw" => Some(size),
        "iso" => {
            // The primary volume descriptor at sector 16: "CD001", then the volume space size
            // (both-endian u32 at 80) and the logical block size (both-endian u16 at 128).
            let pvd = read_at(32768, 132)?;
            if &pvd[1..6] != b"CD001" {
                return None;
            }
            let blocks = u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]);
            let block_size = u16::from_le_bytes([pvd[128], pvd[129]]);
            Some(u64::from(blocks) * u64::from(block_size))
        }
        "qcow2" => {
            let header = read_at(0, 32)?;
            if &header[0..4] != b"QFI\xfb" {
                return None;
            }
            Some(u64::from_be_bytes(header[24..32].try_into().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod virtual_size_tests {
    use super::virtual_size;

    fn check(disk_format: &str, data: &[u8], expected: Option<u64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        std::fs::write(&path, data).expect("write");
        assert_eq!(virtual_size(&path, Some(disk_format), data.len() as u64), expected, "{disk_format}");
    }

    #[test]
    fn virtual_size_follows_the_format_inspectors() {
        check("raw", &[7; 1000], Some(1000));
        let mut iso = vec![0u8; 34816];
        iso[32768] = 1;
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[32768 + 80..32768 + 84].copy_from_slice(&17u32.to_le_bytes());
        iso[32768 + 128..32768 + 130].copy_from_slice(&2048u16.to_le_bytes());
        check("iso", &iso, Some(17 * 2048));
        check("iso", &[0; 40000], None);
        check("iso", &[0; 100], None);
        let mut qcow2 = vec![0u8; 512];
        qcow2[0..4].copy_from_slice(b"QFI\xfb");
        qcow2[24..32].copy_from_slice(&(5u64 << 30).to_be_bytes());
        check("qcow2", &qcow2, Some(5 << 30));
        check("qcow2", &[1; 512], None);
        check("vmdk", &[1; 512], None);
    }
}
