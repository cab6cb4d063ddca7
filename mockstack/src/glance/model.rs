//! Glance's records as plain data: image and member statuses, visibility, the `Image` and `Member` records and their exact JSON representations, and `GlanceError`.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::clock::iso8601;

/// An image's status, as Glance's schema enumerates it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::Display, strum::EnumString, strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    Deleted,
    Deactivated,
    Uploading,
    Importing,
    PendingDelete,
}

impl ImageStatus {
    /// Glance's `Image.valid_state_targets`: the statuses this one may move to.
    pub fn can_become(self, to: ImageStatus) -> bool {
        use ImageStatus::*;
        let targets: &[ImageStatus] = match self {
            Queued => &[Saving, Uploading, Importing, Active, Deleted],
            Saving => &[Active, Killed, Deleted, Queued],
            Uploading => &[Importing, Queued, Deleted],
            Importing => &[Active, Deleted, Queued],
            Active => &[PendingDelete, Deleted, Deactivated],
            Killed => &[Deleted],
            PendingDelete => &[Deleted, Active],
            Deleted => &[],
            Deactivated => &[Active, Deleted],
        };
        targets.contains(&to)
    }
}

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Visibility {
    Public,
    Community,
    Shared,
    Private,
}

/// A member project's answer to a shared image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

/// One Glance image record.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: Visibility,
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    /// Hex md5 of the data.
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub protected: bool,
    pub os_hidden: bool,
    pub tags: BTreeSet<String>,
    /// Extra (custom) properties; Glance stores them as strings.
    pub properties: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Image {
    /// Glance's representation of the image, key order included: extra properties first, then
    /// the core attributes, `tags`, and the relative `self`/`file`/`schema` links real Glance sends.
    pub fn to_json(&self) -> Value {
        let mut view = Map::new();
        for (k, v) in &self.properties {
            view.insert(k.clone(), Value::String(v.clone()));
        }
        view.insert("name".into(), json!(self.name));
        view.insert("disk_format".into(), json!(self.disk_format));
        view.insert("container_format".into(), json!(self.container_format));
        view.insert("visibility".into(), json!(self.visibility.to_string()));
        view.insert("size".into(), json!(self.size));
        view.insert("virtual_size".into(), json!(self.virtual_size));
        view.insert("status".into(), json!(self.status.to_string()));
        view.insert("checksum".into(), json!(self.checksum));
        view.insert("protected".into(), json!(self.protected));
        view.insert("min_ram".into(), json!(self.min_ram));
        view.insert("min_disk".into(), json!(self.min_disk));
        view.insert("owner".into(), json!(self.owner));
        view.insert("os_hidden".into(), json!(self.os_hidden));
        view.insert("os_hash_algo".into(), json!(self.os_hash_algo));
        view.insert("os_hash_value".into(), json!(self.os_hash_value));
        view.insert("id".into(), json!(self.id));
        view.insert("created_at".into(), json!(iso8601(self.created_at)));
        view.insert("updated_at".into(), json!(iso8601(self.updated_at)));
        view.insert("tags".into(), json!(self.tags));
        view.insert("self".into(), json!(format!("/v2/images/{}", self.id)));
        view.insert("file".into(), json!(format!("/v2/images/{}/file", self.id)));
        view.insert("schema".into(), json!("/v2/schemas/image"));
        Value::Object(view)
    }
}

/// A project an image is shared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Member {
    pub fn to_json(&self) -> Value {
        json!({
            "member_id": self.member_id,
            "image_id": self.image_id,
            "status": self.status.to_string(),
            "created_at": iso8601(self.created_at),
            "updated_at": iso8601(self.updated_at),
            "schema": "/v2/schemas/member",
        })
    }
}

/// A refusal from the image service; each variant carries Glance's own message for the client.
#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    /// 400: the request is malformed or breaks a rule.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: the caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such image (or not visible to the caller).
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the image's state forbids it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 410: the image went away during an upload.
    #[error("gone: {0}")]
    Gone(String),
    /// 413: the data is larger than the size cap.
    #[error("too large: {0}")]
    TooLarge(String),
    /// 500: the data directory failed us.
    #[error("image data i/o failed")]
    Io(#[from] std::io::Error),
}

impl GlanceError {
    pub fn status(&self) -> StatusCode {
        match self {
            GlanceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GlanceError::Forbidden(_) => StatusCode::FORBIDDEN,
            GlanceError::NotFound(_) => StatusCode::NOT_FOUND,
            GlanceError::Conflict(_) => StatusCode::CONFLICT,
            GlanceError::Gone(_) => StatusCode::GONE,
            GlanceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GlanceError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text Glance puts in the error body.
    pub fn glance_message(&self) -> String {
        match self {
            GlanceError::BadRequest(m)
            | GlanceError::Forbidden(m)
            | GlanceError::NotFound(m)
            | GlanceError::Conflict(m)
            | GlanceError::Gone(m)
            | GlanceError::TooLarge(m) => m.clone(),
            GlanceError::Io(e) => format!("Error in store: {e}"),
        }
    }

    /// The 403 oslo.policy answers when a rule refuses.
    pub fn policy(action: &str) -> GlanceError {
        GlanceError::Forbidden(format!("You are not authorized to complete {action} action."))
    }

    pub fn no_image(id: &str) -> GlanceError {
        GlanceError::NotFound(format!("No image found with ID {id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn status_transitions_follow_glance() {
        use ImageStatus::*;
        for (from, to, ok) in [
            (Queued, Saving, true),
            (Saving, Active, true),
            (Saving, Queued, true),
            (Active, Saving, false),
            (Saving, Saving, false),
            (Active, Deactivated, true),
            (Deactivated, Active, true),
            (Deleted, Active, false),
            (Killed, Deleted, true),
        ] {
            assert_eq!(from.can_become(to), ok, "{from} -> {to}");
        }
        for st in ImageStatus::iter() {
            assert_eq!(st.to_string().parse::<ImageStatus>(), Ok(st));
        }
        assert_eq!(ImageStatus::PendingDelete.to_string(), "pending_delete");
        assert_eq!("Active".parse::<ImageStatus>().ok(), None, "statuses are lower case");
    }
}
