//! Who may see and change an image: the request context Glance's policies see ([`Viewer`]) and the rules the store applies (`get_image`, `modify_image`, `download_image`, publicizing and communitizing).

use super::model::{GlanceError, Image, MemberStatus, Visibility};
use super::store::ImageRecord;

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

    /// An admin of no project in particular: the cloud itself, as the compute host acts on images.
    pub fn cloud_admin() -> Viewer {
        Viewer { project_id: String::new(), admin: true, writer: true }
    }
}

/// Whether `project` is a member of the image (with that answer, when `status` is given).
pub(super) fn is_member(record: &ImageRecord, project: &str, status: Option<MemberStatus>) -> bool {
    record.members.get(project).is_some_and(|m| status.is_none_or(|s| m.status == s))
}

/// Glance's `get_image` rule: admin, owner, public, community, or a member of a shared image.
pub(super) fn can_see(record: &ImageRecord, viewer: &Viewer) -> bool {
    let image = &record.image;
    viewer.admin
        || image.owner.as_deref() == Some(viewer.project_id.as_str())
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || (image.visibility == Visibility::Shared && is_member(record, &viewer.project_id, None))
}

/// Glance's `modify_image`-style rule: admin, or a member of the owning project.
pub(super) fn can_change(image: &Image, viewer: &Viewer) -> bool {
    viewer.admin || (viewer.writer && image.owner.as_deref() == Some(viewer.project_id.as_str()))
}

/// Glance's `download_image` rule (ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE) on an image the viewer can see: an admin,
/// or the member role (a reader may look at an image's record but not fetch its data).
pub(super) fn can_download(viewer: &Viewer) -> bool {
    viewer.admin || viewer.writer
}

/// The `publicize_image` and `communitize_image` rules for a visibility being set.
pub(super) fn check_visibility_policy(visibility: Visibility, viewer: &Viewer) -> Result<(), GlanceError> {
    match visibility {
        Visibility::Public if !viewer.admin => Err(GlanceError::policy("publicize_image")),
        Visibility::Community if !(viewer.admin || viewer.writer) => Err(GlanceError::policy("communitize_image")),
        _ => Ok(()),
    }
}
