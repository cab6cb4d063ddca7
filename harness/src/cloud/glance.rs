//! Typed Glance v2 calls: discovery, list (with `next` pagination), get, create, streaming upload and download,
//! JSON-patch update, tags, delete.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::{Method, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWrite;

use super::auth::Session;
use super::catalog::{VersionDocument, unversioned};
use super::error::CloudError;
use super::http::{Body, Request, Response};
use super::transfer::{FileUpload, HashedCopyError, Progress, TransferDigest, copy_hashed};

/// Glance's JSON-patch media type for image updates.
pub const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// An image record. Properties Glance does not define (os_type, hw_disk_bus, image_type, ...) land in `properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub min_disk: u64,
    #[serde(default)]
    pub min_ram: u64,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

impl Image {
    /// A custom property as a string, if set.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
}

/// The body of `POST /v2/images`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewImage {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Custom properties, sent as top-level keys as Glance expects.
    #[serde(flatten)]
    pub properties: BTreeMap<String, String>,
}

/// One JSON-patch operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl PatchOp {
    pub fn add(key: &str, value: impl Into<Value>) -> PatchOp {
        PatchOp { op: "add", path: format!("/{}", escape_pointer(key)), value: Some(value.into()) }
    }

    pub fn replace(key: &str, value: impl Into<Value>) -> PatchOp {
        PatchOp { op: "replace", path: format!("/{}", escape_pointer(key)), value: Some(value.into()) }
    }

    pub fn remove(key: &str) -> PatchOp {
        PatchOp { op: "remove", path: format!("/{}", escape_pointer(key)), value: None }
    }

    /// `replace` when `image` already has the key, `add` when it does not.
    pub fn set(image: &Image, key: &str, value: impl Into<Value>) -> PatchOp {
        let exists = image.properties.contains_key(key)
            || matches!(
                key,
                "name" | "min_disk" | "min_ram" | "visibility" | "protected" | "disk_format" | "container_format"
            );
        if exists { PatchOp::replace(key, value) } else { PatchOp::add(key, value) }
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Filters for listing images.
#[derive(Debug, Clone, Default)]
pub struct ImageQuery {
    pub name: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub visibility: Option<String>,
    /// Page size asked of Glance.
    pub limit: Option<u32>,
}

#[derive(Deserialize)]
struct ImagePage {
    images: Vec<Image>,
    #[serde(default)]
    next: Option<String>,
}

/// The image service of one cloud.
#[derive(Clone)]
pub struct Glance {
    session: Arc<Session>,
    /// The endpoint without its version: `{root}/v2/images`.
    root: String,
}

impl Glance {
    /// Checks the endpoint's version document (`GET {endpoint}/`, 300 Multiple Choices) for a v2 API.
    pub async fn discover(session: Arc<Session>, catalog_url: &str) -> Result<Glance, CloudError> {
        let root = unversioned(catalog_url).to_string();
        let mut document: Option<VersionDocument> = None;
        let mut last_error = None;
        for path in ["/", "/versions"] {
            match session.send(&Request::new("image", Method::GET, format!("{root}{path}"))).await {
                Ok(response) => match response.json::<VersionDocument>().await {
                    Ok(doc) => {
                        document = Some(doc);
                        break;
                    }
                    Err(e) => last_error = Some(e),
                },
                Err(e @ (CloudError::NotFound(_) | CloudError::Unexpected(_))) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some(document) = document else {
            return Err(CloudError::Discovery {
                service: "image".into(),
                message: format!(
                    "no version document at {root}/ or {root}/versions{}",
                    last_error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            });
        };
        if document.usable(2).is_empty() {
            let offered: Vec<String> = document.entries().iter().map(|e| format!("{} ({})", e.id, e.status)).collect();
            return Err(CloudError::Discovery {
                service: "image".into(),
                message: format!("{root} offers no usable v2 API (it offers: {})", offered.join(", ")),
            });
        }
        Ok(Glance { session, root })
    }

    pub fn root_url(&self) -> &str {
        &self.root
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2{path}", self.root)
    }

    async fn send(&self, request: Request) -> Result<Response, CloudError> {
        self.session.send(&request).await
    }

    /// All images matching `query`, following `next` links across pages.
    pub async fn list_images(&self, query: &ImageQuery) -> Result<Vec<Image>, CloudError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        for (key, value) in
            [("name", &query.name), ("status", &query.status), ("tag", &query.tag), ("visibility", &query.visibility)]
        {
            if let Some(value) = value {
                params.push((key, value.clone()));
            }
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let mut url = reqwest::Url::parse(&self.url("/images")).map_err(|e| CloudError::Discovery {
            service: "image".into(),
            message: format!("bad endpoint URL {}: {e}", self.root),
        })?;
        url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut next = Some(url.to_string());
        let mut images = Vec::new();
        let mut seen_pages = std::collections::HashSet::new();
        while let Some(page_url) = next.take() {
            if !seen_pages.insert(page_url.clone()) {
                break; // a `next` that points back would loop for ever
            }
            let page: ImagePage = self.send(Request::new("image", Method::GET, &page_url)).await?.json().await?;
            images.extend(page.images);
            // `next` is a path from the API root, e.g. `/v2/images?marker=...`.
            next = page.next.map(|n| if n.starts_with("http") { n } else { format!("{}{n}", self.root) });
        }
        Ok(images)
    }

    pub async fn get_image(&self, id: &str) -> Result<Image, CloudError> {
        self.send(Request::new("image", Method::GET, self.url(&format!("/images/{id}")))).await?.json().await
    }

    pub async fn create_image(&self, image: &NewImage) -> Result<Image, CloudError> {
        let request = Request::new("image", Method::POST, self.url("/images")).body(Body::json(image));
        self.send(request).await?.json().await
    }

    /// `PUT /v2/images/{id}/file`: streams the file from disk (never all in memory), with a known Content-Length,
    /// and returns the digest of the bytes sent, to compare with the image's `checksum`/`os_hash_value`.
    pub async fn upload_file(
        &self,
        id: &str,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<TransferDigest, CloudError> {
        self.upload(id, FileUpload::new(path, progress)?).await
    }

    /// [`Glance::upload_file`] of a file whose digests the caller knows: the bytes are counted, not hashed (the
    /// returned digests are unknown).
    pub async fn upload_file_unhashed(
        &self,
        id: &str,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<TransferDigest, CloudError> {
        self.upload(id, FileUpload::new(path, progress)?.unhashed()).await
    }

    async fn upload(&self, id: &str, upload: FileUpload) -> Result<TransferDigest, CloudError> {
        let upload = Arc::new(upload);
        let request = Request::new("image", Method::PUT, self.url(&format!("/images/{id}/file")))
            .body(Body::Stream { content_type: "application/octet-stream", source: upload.clone() });
        self.send(request).await?;
        upload.digest()
    }

    /// `GET /v2/images/{id}/file` into `writer`, hashed on the way. An image without data gives 0 bytes.
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        id: &str,
        writer: &mut W,
        progress: Option<Progress>,
    ) -> Result<TransferDigest, CloudError> {
        let mut request = Request::new("image", Method::GET, self.url(&format!("/images/{id}/file")));
        request.streaming_response = true;
        let response = self.send(request).await?;
        let total = response.header(header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
        match copy_hashed(response.into_stream(), writer, total, progress.as_ref()).await {
            Ok(digest) => Ok(digest),
            Err(HashedCopyError::Source(e)) => Err(e),
            Err(HashedCopyError::Write(source)) => {
                Err(CloudError::Io { action: "write the download of image", path: id.into(), source })
            }
        }
    }

    /// Downloads into a new file at `path`.
    pub async fn download_to_path(
        &self,
        id: &str,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<TransferDigest, CloudError> {
        let mut file = tokio::fs::File::create(path).await.map_err(|source| CloudError::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        })?;
        self.download(id, &mut file, progress).await
    }

    /// `PATCH /v2/images/{id}` with a JSON patch.
    pub async fn update_image(&self, id: &str, ops: &[PatchOp]) -> Result<Image, CloudError> {
        let data = serde_json::to_vec(ops).unwrap_or_default();
        let request = Request::new("image", Method::PATCH, self.url(&format!("/images/{id}")))
            .body(Body::Bytes { content_type: JSON_PATCH, data: data.into() });
        self.send(request).await?.json().await
    }

    pub async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        self.send(Request::new("image", Method::DELETE, self.url(&format!("/images/{id}")))).await.map(drop)
    }

    pub async fn add_tag(&self, id: &str, tag: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/images/{id}/tags/{}", encode_segment(tag)));
        self.send(Request::new("image", Method::PUT, url)).await.map(drop)
    }

    pub async fn remove_tag(&self, id: &str, tag: &str) -> Result<(), CloudError> {
        let url = self.url(&format!("/images/{id}/tags/{}", encode_segment(tag)));
        self.send(Request::new("image", Method::DELETE, url)).await.map(drop)
    }
}

/// Percent-encodes a path segment.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
