//! Image data as Glance's `image_data` controller and domain handle it: an upload moves the image `queued` → `saving` → `active` (back to `queued` if interrupted), a download serves the stored file, and the virtual size comes from the format inspector.
//!
//! The bytes themselves stream through [`super::data`].

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use guestsim::sniff;

use super::data::{self, CopyError, Digests};
use super::model::{GlanceError, Image, ImageStatus};
use super::policy::{Viewer, can_change, can_download, can_see};
use super::store::{GlanceState, forbidden, transition};

impl GlanceState {
    /// Imports data from a local file as an upload would: hashing it and setting
    /// `size`/`checksum`/`os_hash_*` and status `active`.
    pub fn upload_from_file(&self, id: &str, src: &Path) -> Result<Image, GlanceError> {
        let ticket = self.begin_upload(&Viewer::cloud_admin(), id)?;
        let digests = match data::copy_file(src, ticket.partial_path(), self.size_cap()) {
            Ok(d) => d,
            Err(CopyError::Io(e)) => return Err(GlanceError::Io(e)),
            Err(CopyError::TooLarge) => return Err(too_large()),
        };
        self.finish_upload(ticket, digests)
    }

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
        // After the deactivation check, as Glance's `download` orders them.
        if !can_download(viewer) {
            return Err(GlanceError::policy("download_image"));
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

/// The guest-visible size Glance's format inspector reports after an upload: the data size for
/// `raw`, the volume size of an ISO 9660 primary volume descriptor, the size in a qcow2 header,
/// and nothing for formats it does not read (or data too short to tell).
fn virtual_size(path: &Path, disk_format: Option<&str>, size: u64) -> Option<u64> {
    let read_at = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut file = std::fs::File::open(path).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    match disk_format? {
        "raw" => Some(size),
        "iso" => sniff::iso9660_volume_size(&read_at(sniff::ISO9660_DESCRIPTOR_OFFSET, sniff::ISO9660_DESCRIPTOR_LEN)?),
        "qcow2" => sniff::qcow2_virtual_size(&read_at(0, sniff::QCOW2_SIZE_HEADER_LEN)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glance::store::tests::{body, glance};
    use serde_json::json;

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
