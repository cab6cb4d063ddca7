//! Image members (`/v2/images/{id}/members`): who a shared image is offered to, and their answers, with Glance's rules on who may list, add, answer and remove.

use super::model::{GlanceError, Member, MemberStatus, Visibility};
use super::policy::{Viewer, can_change, can_see};
use super::store::{GlanceState, ImageRecord, Tables, bad, forbidden};

impl GlanceState {
    fn shared_record<'t>(
        tables: &'t mut Tables,
        viewer: &Viewer,
        id: &str,
    ) -> Result<&'t mut ImageRecord, GlanceError> {
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
        let status = status.parse::<MemberStatus>().map_err(|_| {
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
}
