//! Glance v2: image records, visibility and members, JSON-patch updates, and image data streamed to disk with md5/sha512 computed on the fly.
//!
//! - `model.rs`: the records (`Image`, `Member`), statuses and `GlanceError`.
//! - `store.rs`: `GlanceState`, the tables and the rules on images (create, patch, tags,
//!   (de)activation, delete, status transitions), plus the in-process API Nova and the compute
//!   host call.
//! - `policy.rs`: who may see and change an image (`Viewer` and Glance's policy rules).
//! - `list_query.rs`: the listing query language (filters, operators, sorting, paging).
//! - `members.rs`: image members and their answers.
//! - `image_data.rs`: uploads and downloads (`queued` → `saving` → `active`), the virtual size
//!   from the format inspector (guestsim's sniffer).
//! - `patch.rs`: Glance's two JSON-patch dialects.
//! - `schema.rs`: `/v2/schemas/*` documents and the jsonschema subset Glance validates with.
//! - `data.rs`: streaming writes with parallel hashing.
//! - `api.rs`: the HTTP handlers, mounted under `/image`.

mod api;
pub mod data;
mod image_data;
mod list_query;
mod members;
mod model;
pub mod patch;
mod policy;
pub mod schema;
mod store;

pub use api::{router, versions};
pub use data::Digests;
pub use image_data::UploadTicket;
pub use list_query::{ListPage, ListQuery, MemberFilter, SortDir, VisibilityFilter};
pub use model::{GlanceError, Image, ImageStatus, Member, MemberStatus, Visibility};
pub use policy::Viewer;
pub use store::{DEFAULT_SIZE_CAP, GlanceState};
