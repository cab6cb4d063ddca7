//! The workflow's [`Driver`] over HTTP: the same calls to a real cloud and to mockstack.
//!
//! Only the clock and the domain XML source differ: an embedded mockstack lends its virtual
//! clock (so waiting costs nothing) and serves the domain XML on its admin endpoint; a real
//! cloud uses real time, and domain XML comes from a command (`virsh dumpxml` over ssh) or
//! a file, when the user configures one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use crate::cloud::glance::{ImageQuery, PatchOp};
use crate::cloud::http::Request;
use crate::cloud::nova::{NewFlavor, NewServer};
use crate::cloud::transfer::{TransferDigest, md5_file};
use crate::cloud::{self, Cloud, CloudError};
use crate::workflow::{
    DownloadError, Driver, DriverMedia, FlavorInfo, ImageChange, ImageInfo, ImageRequest, InspectedDownload,
    ServerInfo, ServerRequest,
};

/// The progress bar's label for uploading `file`.
fn upload_label(file: &Path) -> String {
    format!("upload {}", file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

/// Where the libvirt domain XML of a server comes from.
#[derive(Debug, Clone, Default)]
pub enum DomainXmlSource {
    #[default]
    None,
    /// mockstack's `GET /mockstack/servers/{id}/domain.xml`, at this base URL.
    MockAdmin(String),
    /// A shell command with `{host}` and `{instance}` replaced, e.g.
    /// `ssh {host} sudo virsh dumpxml {instance}`.
    Command(String),
    /// A file the user saved.
    File(PathBuf),
}

/// Time as the cloud sees it.
#[derive(Clone)]
pub enum RunClock {
    Real(Instant),
    /// An embedded mockstack's virtual clock: sleeping advances it.
    Mock(Arc<mockstack::Clock>),
}

pub struct HttpDriver {
    cloud: Cloud,
    describe: String,
    clock: RunClock,
    domain_xml: DomainXmlSource,
    /// Show a progress bar on stderr for uploads and downloads.
    progress: bool,
    /// The driver media the compute host attaches, when known (an embedded mockstack).
    attached_driver_media: Option<DriverMedia>,
}

impl HttpDriver {
    pub fn new(cloud: Cloud, clock: RunClock, domain_xml: DomainXmlSource) -> HttpDriver {
        let config = cloud.config();
        let describe = format!("{} ({})", config.name, config.auth_url);
        HttpDriver { cloud, describe, clock, domain_xml, progress: false, attached_driver_media: None }
    }

    /// Tells the workflow which driver media the cloud's compute host attaches (a cloud whose configuration the
    /// harness chose).
    pub fn with_attached_driver_media(mut self, attached: DriverMedia) -> HttpDriver {
        self.attached_driver_media = Some(attached);
        self
    }

    /// Shows transfer progress bars on stderr (for a terminal).
    pub fn with_progress(mut self, progress: bool) -> HttpDriver {
        self.progress = progress;
        self
    }

    /// Runs one transfer with its progress bar (when enabled), cleared once the transfer ends either way.
    async fn transfer_with_bar<T, F>(
        &self,
        what: String,
        transfer: impl FnOnce(Option<cloud::transfer::Progress>) -> F,
    ) -> Result<T, CloudError>
    where
        F: std::future::Future<Output = Result<T, CloudError>>,
    {
        let (bar, progress) = self.progress_bar(what);
        let result = transfer(progress).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    }

    fn progress_bar(&self, what: String) -> (Option<indicatif::ProgressBar>, Option<cloud::transfer::Progress>) {
        if !self.progress {
            return (None, None);
        }
        let bar = indicatif::ProgressBar::new(0).with_message(what);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .expect("a valid template"),
        );
        let handle = bar.clone();
        let callback: cloud::transfer::Progress = Arc::new(move |done, total| {
            handle.set_length(total);
            handle.set_position(done);
        });
        (Some(bar), Some(callback))
    }

    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }
}

fn image_info(image: cloud::glance::Image) -> ImageInfo {
    let properties: BTreeMap<String, String> = image
        .properties
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "self" | "file" | "schema" | "locations" | "stores"))
        .map(|(k, v)| (k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
        .collect();
    ImageInfo {
        id: image.id,
        name: image.name.unwrap_or_default(),
        status: image.status,
        disk_format: image.disk_format,
        container_format: image.container_format,
        size: image.size,
        checksum: image.checksum,
        os_hash_algo: image.os_hash_algo,
        os_hash_value: image.os_hash_value,
        visibility: image.visibility.unwrap_or_default(),
        owner: image.owner,
        min_disk: image.min_disk,
        min_ram: image.min_ram,
        properties,
    }
}

fn server_info(server: cloud::nova::Server) -> ServerInfo {
    ServerInfo {
        id: server.id,
        name: server.name,
        status: server.status,
        task_state: server.task_state,
        vm_state: server.vm_state,
        power_state: server.power_state.map(i64::from),
        fault: server.fault.map(|f| f.message),
        host: server.host,
        instance_name: server.instance_name,
    }
}

fn flavor_info(f: cloud::nova::Flavor) -> FlavorInfo {
    FlavorInfo {
        id: f.id,
        name: f.name,
        vcpus: f.vcpus,
        ram_mb: f.ram as u32,
        disk_gb: f.disk as u32,
        ephemeral_gb: f.ephemeral as u32,
        swap_mb: f.swap as u32,
    }
}

fn not_found_is_none<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_found_is_ok(r: Result<(), CloudError>) -> Result<(), CloudError> {
    not_found_is_none(r).map(drop)
}

impl Driver for HttpDriver {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn elapsed(&self) -> Duration {
        match &self.clock {
            RunClock::Real(start) => start.elapsed(),
            RunClock::Mock(clock) => clock.elapsed(),
        }
    }

    fn attached_driver_media(&self) -> Option<DriverMedia> {
        self.attached_driver_media
    }

    fn resources_outlive_process(&self) -> bool {
        // A mockstack that lends its clock runs in this process, and its resources go with it.
        !matches!(self.clock, RunClock::Mock(_))
    }

    async fn sleep(&self, d: Duration) {
        match &self.clock {
            RunClock::Real(_) => tokio::time::sleep(d).await,
            RunClock::Mock(clock) => clock.sleep(d).await,
        }
    }

    async fn images_named(&self, name: &str) -> Result<Vec<ImageInfo>, CloudError> {
        let glance = self.cloud.glance().await?;
        let query = ImageQuery { name: Some(name.to_string()), ..ImageQuery::default() };
        let images = glance.list_images(&query).await?;
        Ok(images.into_iter().map(image_info).collect())
    }

    async fn image(&self, id: &str) -> Result<Option<ImageInfo>, CloudError> {
        let glance = self.cloud.glance().await?;
        Ok(not_found_is_none(glance.get_image(id).await)?.map(image_info))
    }

    async fn create_image(&self, image: &ImageRequest) -> Result<ImageInfo, CloudError> {
        let glance = self.cloud.glance().await?;
        let new = cloud::glance::NewImage {
            name: image.name.clone(),
            disk_format: Some(image.disk_format.clone()),
            container_format: Some(image.container_format.clone()),
            visibility: Some(image.visibility.clone()),
            properties: image.properties.clone(),
            ..Default::default()
        };
        glance.create_image(&new).await.map(image_info)
    }

    async fn upload_image(&self, id: &str, file: &Path) -> Result<TransferDigest, CloudError> {
        let glance = self.cloud.glance().await?;
        self.transfer_with_bar(upload_label(file), |p| glance.upload_file(id, file, p)).await
    }

    async fn upload_image_known(&self, id: &str, file: &Path, md5: &str) -> Result<TransferDigest, CloudError> {
        let glance = self.cloud.glance().await?;
        let sent = self.transfer_with_bar(upload_label(file), |p| glance.upload_file_unhashed(id, file, p)).await?;
        Ok(TransferDigest { md5: Some(md5.to_string()), ..sent })
    }

    async fn download_and_inspect(&self, id: &str, scratch_dir: &Path) -> Result<InspectedDownload, DownloadError> {
        let scratch = tempfile::Builder::new()
            .prefix("isoharness-validate-")
            .tempfile_in(scratch_dir)
            .map_err(DownloadError::Scratch)?;
        let glance = self.cloud.glance().await.map_err(DownloadError::Transfer)?;
        let digest = self
            .transfer_with_bar(format!("download {id}"), |p| glance.download_to_path(id, scratch.path(), p))
            .await
            .map_err(DownloadError::Transfer)?;
        Ok(InspectedDownload { digest, inspection: crate::inspect::inspect(scratch.path()) })
    }

    async fn check_readable(&self, file: &Path) -> std::io::Result<()> {
        std::fs::File::open(file).map(drop)
    }

    async fn md5_of_file(&self, file: &Path) -> std::io::Result<String> {
        md5_file(file)
    }

    async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<ImageInfo, CloudError> {
        let glance = self.cloud.glance().await?;
        let current = glance.get_image(id).await?;
        let ops: Vec<PatchOp> = changes
            .iter()
            .map(|c| match c {
                ImageChange::Set(k, v) => PatchOp::set(&current, k, v.clone()),
                ImageChange::SetNumber(k, v) => PatchOp::replace(k, *v),
                ImageChange::Remove(k) => PatchOp::remove(k),
            })
            .collect();
        glance.update_image(id, &ops).await.map(image_info)
    }

    async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        let glance = self.cloud.glance().await?;
        not_found_is_ok(glance.delete_image(id).await)
    }

    async fn flavors(&self) -> Result<Vec<FlavorInfo>, CloudError> {
        let nova = self.cloud.nova().await?;
        Ok(nova.list_flavors().await?.into_iter().map(flavor_info).collect())
    }

    async fn create_flavor(&self, flavor: &FlavorInfo) -> Result<FlavorInfo, CloudError> {
        let nova = self.cloud.nova().await?;
        let new = NewFlavor {
            name: flavor.name.clone(),
            ram: u64::from(flavor.ram_mb),
            vcpus: flavor.vcpus,
            disk: u64::from(flavor.disk_gb),
            ephemeral: u64::from(flavor.ephemeral_gb),
            swap: u64::from(flavor.swap_mb),
            is_public: true,
            id: None,
        };
        nova.create_flavor(&new).await.map(flavor_info)
    }

    async fn delete_flavor(&self, id: &str) -> Result<(), CloudError> {
        let nova = self.cloud.nova().await?;
        not_found_is_ok(nova.delete_flavor(id).await)
    }

    async fn create_server(&self, server: &ServerRequest) -> Result<String, CloudError> {
        let nova = self.cloud.nova().await?;
        let new = NewServer {
            name: server.name.clone(),
            image_ref: server.image_id.clone(),
            flavor_ref: server.flavor_id.clone(),
            metadata: BTreeMap::from([("created_by".to_string(), "isoharness".to_string())]),
            no_network: true,
        };
        nova.create_server(&new).await.map(|c| c.id)
    }

    async fn server(&self, id: &str) -> Result<Option<ServerInfo>, CloudError> {
        let nova = self.cloud.nova().await?;
        Ok(not_found_is_none(nova.get_server(id).await)?.map(server_info))
    }

    async fn servers_named(&self, name: &str) -> Result<Vec<ServerInfo>, CloudError> {
        let nova = self.cloud.nova().await?;
        Ok(nova.list_servers_by_name(name).await?.into_iter().map(server_info).collect())
    }

    async fn console_log(&self, id: &str) -> Result<String, CloudError> {
        let nova = self.cloud.nova().await?;
        nova.console_output(id, None).await
    }

    async fn console_url(&self, id: &str) -> Result<Option<String>, CloudError> {
        let nova = self.cloud.nova().await?;
        Ok(not_found_is_none(nova.vnc_console(id).await)?.map(|c| c.url))
    }

    async fn snapshot(&self, server_id: &str, name: &str) -> Result<String, CloudError> {
        let nova = self.cloud.nova().await?;
        nova.create_image(server_id, name, &BTreeMap::new()).await
    }

    async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        let nova = self.cloud.nova().await?;
        not_found_is_ok(nova.delete_server(id).await)
    }

    async fn domain_xml(&self, server: &ServerInfo) -> Result<Option<String>, CloudError> {
        match &self.domain_xml {
            DomainXmlSource::None => Ok(None),
            DomainXmlSource::File(path) => std::fs::read_to_string(path).map(Some).map_err(|source| CloudError::Io {
                action: "read",
                path: path.clone(),
                source,
            }),
            DomainXmlSource::MockAdmin(base) => {
                let token = self.cloud.token().await?;
                let url = format!("{base}/mockstack/servers/{}/domain.xml", server.id);
                // Through the cloud's own client, with its retries and call log, like every other call.
                let request = Request::new("mockstack", Method::GET, url);
                let response = self.cloud.session().http().send(&request, Some(&token.value)).await?;
                Ok(Some(String::from_utf8_lossy(&response.bytes().await?).into_owned()))
            }
            DomainXmlSource::Command(template) => {
                let (Some(host), Some(instance)) = (&server.host, &server.instance_name) else {
                    return Err(CloudError::DomainXml(
                        "the server's host and instance name are admin-only: run as an admin to fetch domain XML"
                            .into(),
                    ));
                };
                let command = template.replace("{host}", host).replace("{instance}", instance);
                let output = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&command)
                    .output()
                    .await
                    .map_err(|e| CloudError::DomainXml(format!("cannot run `{command}`: {e}")))?;
                if !output.status.success() {
                    return Err(CloudError::DomainXml(format!(
                        "`{command}` failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )));
                }
                Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
            }
        }
    }
}
