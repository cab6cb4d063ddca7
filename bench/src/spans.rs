//! Timing spans for profiling a build: a [`Driver`] wrapper that times every call the engine makes, by kind, so the
//! wall time of a build splits into the cloud calls, the waits and the engine's own work.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::cloud::CloudError;
use harness::cloud::transfer::TransferDigest;
use harness::workflow::{
    DownloadError, Driver, DriverMedia, FlavorInfo, ImageChange, ImageInfo, ImageRequest, InspectedDownload,
    ServerInfo, ServerRequest,
};

/// Wall time and count per driver call.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    pub by_call: BTreeMap<&'static str, (u32, Duration)>,
}

impl Spans {
    pub fn total(&self) -> Duration {
        self.by_call.values().map(|(_, d)| *d).sum()
    }

    /// One line per call kind, slowest first.
    pub fn lines(&self, whole: Duration) -> Vec<String> {
        let mut rows: Vec<_> = self.by_call.iter().collect();
        rows.sort_by_key(|(_, (_, time))| std::cmp::Reverse(*time));
        let mut lines: Vec<String> = rows
            .into_iter()
            .map(|(name, (count, time))| {
                format!(
                    "{name:<16} {count:>5} calls {:>9.2} ms {:>5.1} %",
                    time.as_secs_f64() * 1e3,
                    100.0 * time.as_secs_f64() / whole.as_secs_f64()
                )
            })
            .collect();
        let outside = whole.saturating_sub(self.total());
        lines.push(format!(
            "{:<16} {:>11} {:>9.2} ms {:>5.1} %",
            "outside calls",
            "",
            outside.as_secs_f64() * 1e3,
            100.0 * outside.as_secs_f64() / whole.as_secs_f64()
        ));
        lines
    }
}

/// Times every call of the wrapped driver.
pub struct Timed<D> {
    inner: D,
    spans: Mutex<Spans>,
}

impl<D: Driver> Timed<D> {
    pub fn new(inner: D) -> Timed<D> {
        Timed { inner, spans: Mutex::new(Spans::default()) }
    }

    pub fn spans(&self) -> Spans {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn time<T>(&self, name: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        if let Ok(mut spans) = self.spans.lock() {
            let entry = spans.by_call.entry(name).or_default();
            entry.0 += 1;
            entry.1 += started.elapsed();
        }
        out
    }
}

impl<D: Driver> Driver for Timed<D> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn elapsed(&self) -> Duration {
        self.inner.elapsed()
    }
    async fn sleep(&self, d: Duration) {
        self.time("sleep", self.inner.sleep(d)).await
    }
    async fn images_named(&self, name: &str) -> Result<Vec<ImageInfo>, CloudError> {
        self.time("images_named", self.inner.images_named(name)).await
    }
    async fn image(&self, id: &str) -> Result<Option<ImageInfo>, CloudError> {
        self.time("image", self.inner.image(id)).await
    }
    async fn create_image(&self, image: &ImageRequest) -> Result<ImageInfo, CloudError> {
        self.time("create_image", self.inner.create_image(image)).await
    }
    fn resources_outlive_process(&self) -> bool {
        self.inner.resources_outlive_process()
    }
    fn attached_driver_media(&self) -> Option<DriverMedia> {
        self.inner.attached_driver_media()
    }
    async fn upload_image(&self, id: &str, file: &Path) -> Result<TransferDigest, CloudError> {
        self.time("upload_image", self.inner.upload_image(id, file)).await
    }
    async fn upload_image_known(&self, id: &str, file: &Path, md5: &str) -> Result<TransferDigest, CloudError> {
        self.time("upload_image", self.inner.upload_image_known(id, file, md5)).await
    }
    async fn download_and_inspect(&self, id: &str, scratch_dir: &Path) -> Result<InspectedDownload, DownloadError> {
        self.time("download_and_inspect", self.inner.download_and_inspect(id, scratch_dir)).await
    }
    async fn check_readable(&self, file: &Path) -> std::io::Result<()> {
        self.time("check_readable", self.inner.check_readable(file)).await
    }
    async fn md5_of_file(&self, file: &Path) -> std::io::Result<String> {
        self.time("md5_of_file", self.inner.md5_of_file(file)).await
    }
    async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<ImageInfo, CloudError> {
        self.time("update_image", self.inner.update_image(id, changes)).await
    }
    async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        self.time("delete_image", self.inner.delete_image(id)).await
    }
    async fn flavors(&self) -> Result<Vec<FlavorInfo>, CloudError> {
        self.time("flavors", self.inner.flavors()).await
    }
    async fn create_flavor(&self, flavor: &FlavorInfo) -> Result<FlavorInfo, CloudError> {
        self.time("create_flavor", self.inner.create_flavor(flavor)).await
    }
    async fn delete_flavor(&self, id: &str) -> Result<(), CloudError> {
        self.time("delete_flavor", self.inner.delete_flavor(id)).await
    }
    async fn create_server(&self, server: &ServerRequest) -> Result<String, CloudError> {
        self.time("create_server", self.inner.create_server(server)).await
    }
    async fn server(&self, id: &str) -> Result<Option<ServerInfo>, CloudError> {
        self.time("server", self.inner.server(id)).await
    }
    async fn servers_named(&self, name: &str) -> Result<Vec<ServerInfo>, CloudError> {
        self.time("servers_named", self.inner.servers_named(name)).await
    }
    async fn console_log(&self, id: &str) -> Result<String, CloudError> {
        self.time("console_log", self.inner.console_log(id)).await
    }
    async fn console_url(&self, id: &str) -> Result<Option<String>, CloudError> {
        self.time("console_url", self.inner.console_url(id)).await
    }
    async fn snapshot(&self, server_id: &str, name: &str) -> Result<String, CloudError> {
        self.time("snapshot", self.inner.snapshot(server_id, name)).await
    }
    async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        self.time("delete_server", self.inner.delete_server(id)).await
    }
    async fn domain_xml(&self, server: &ServerInfo) -> Result<Option<String>, CloudError> {
        self.time("domain_xml", self.inner.domain_xml(server)).await
    }
}
