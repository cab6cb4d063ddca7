//! Glance v2: image records, visibility and members, JSON-patch updates, and image data streamed to disk with md5/sha512 computed on the fly.
//!
//! - `model.rs`: the records (`Image`, `Member`), statuses and `GlanceError`.
//! - `store.rs`: `GlanceState`, the tables and every rule (policies, visibility, listing), plus the
//!   in-process API Nova and the compute host call.
//! - `patch.rs`: Glance's two JSON-patch dialects.
//! - `schema.rs`: `/v2/schemas/*` documents and the jsonschema subset Glance validates with.
//! - `data.rs`: streaming writes with parallel hashing.
//! - `api.rs`: the HTTP handlers, mounted under `/image`.

mod api;
pub mod data;
mod model;
pub mod patch;
pub mod schema;
mod store;

pub use api::{router, versions};
pub use data::Digests;
pub use model::{GlanceError, Image, ImageStatus, Member, MemberStatus, Visibility};
pub use store::{
    DEFAULT_SIZE_CAP, GlanceState, ListPage, ListQuery, MemberFilter, SortDir, UploadTicket, Viewer, VisibilityFilter,
};
