//! The service catalog from a Keystone token, endpoint selection by type/interface/region, the services' version
//! documents, and Nova microversion negotiation.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::config::Interface;
use super::error::CloudError;

/// One catalog entry (`token.catalog[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogService {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

/// The services a token may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub services: Vec<CatalogService>,
}

impl Catalog {
    /// The URL of `service_type` for `interface` in `region` (any region when `None`).
    pub fn endpoint(
        &self,
        service_type: &str,
        interface: Interface,
        region: Option<&str>,
    ) -> Result<String, CloudError> {
        let discovery = |message: String| CloudError::Discovery { service: service_type.to_string(), message };
        let Some(service) = self.services.iter().find(|s| s.service_type == service_type) else {
            let offered: Vec<&str> = self.services.iter().map(|s| s.service_type.as_str()).collect();
            return Err(discovery(format!(
                "the catalog has no {service_type:?} service (it offers: {})",
                if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
            )));
        };
        let in_region = |e: &&CatalogEndpoint| match region {
            None => true,
            Some(r) => e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r),
        };
        let found = service.endpoints.iter().filter(in_region).find(|e| e.interface == interface.as_str());
        match found {
            Some(endpoint) => Ok(endpoint.url.clone()),
            None => {
                let offered: Vec<String> = service
                    .endpoints
                    .iter()
                    .map(|e| {
                        format!(
                            "{} in {}",
                            e.interface,
                            e.region_id.as_deref().or(e.region.as_deref()).unwrap_or("no region")
                        )
                    })
                    .collect();
                Err(discovery(format!(
                    "no {} endpoint{} (the catalog has: {})",
                    interface.as_str(),
                    region.map(|r| format!(" in region {r:?}")).unwrap_or_default(),
                    if offered.is_empty() { "no endpoints".to_string() } else { offered.join(", ") }
                )))
            }
        }
    }
}

/// A compute API microversion, `X.Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion {
    pub major: u32,
    pub minor: u32,
}

impl Microversion {
    pub const fn new(major: u32, minor: u32) -> Microversion {
        Microversion { major, minor }
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Microversion {
    type Err = String;

    fn from_str(s: &str) -> Result<Microversion, String> {
        let trimmed = s.trim().trim_start_matches('v');
        let (major, minor) = trimmed.split_once('.').ok_or_else(|| format!("{s:?} is not a version X.Y"))?;
        let parse = |p: &str| p.parse::<u32>().map_err(|_| format!("{s:?} is not a version X.Y"));
        Ok(Microversion { major: parse(major)?, minor: parse(minor)? })
    }
}

/// One entry of a version document (`versions[]` or `version`).
#[derive(Debug, Clone, Deserialize)]
pub struct VersionEntry {
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// Nova: the highest microversion (empty when the API has none).
    #[serde(default)]
    pub version: String,
    /// Nova: the lowest microversion.
    #[serde(default)]
    pub min_version: String,
}

/// `{"versions": [...]}` (Glance, and Nova at its root), `{"versions": {"values": [...]}}` (Keystone), or
/// `{"version": {...}}` (a versioned endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VersionDocument {
    List { versions: VersionList },
    Single { version: VersionEntry },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VersionList {
    Plain(Vec<VersionEntry>),
    Values { values: Vec<VersionEntry> },
}

impl VersionDocument {
    pub fn entries(&self) -> Vec<&VersionEntry> {
        match self {
            VersionDocument::List { versions: VersionList::Plain(v) | VersionList::Values { values: v } } => {
                v.iter().collect()
            }
            VersionDocument::Single { version } => vec![version],
        }
    }

    /// The usable entries whose id is `v{major}` or `v{major}.N`, newest first.
    pub fn usable(&self, major: u32) -> Vec<&VersionEntry> {
        let mut found: Vec<&VersionEntry> = self
            .entries()
            .into_iter()
            .filter(|e| {
                let id = e.id.trim_start_matches('v');
                id == major.to_string() || id.split_once('.').is_some_and(|(m, _)| m == major.to_string())
            })
            .filter(|e| !e.status.eq_ignore_ascii_case("deprecated") && !e.status.eq_ignore_ascii_case("experimental"))
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.id.trim_start_matches('v').parse::<Microversion>().ok()));
        found
    }
}

/// The microversion range of a compute endpoint; `None` for an API without microversions.
pub fn compute_range(entry: &VersionEntry) -> Result<Option<(Microversion, Microversion)>, CloudError> {
    if entry.version.is_empty() {
        return Ok(None);
    }
    let bad = |m: String| CloudError::Discovery { service: "compute".into(), message: m };
    let max: Microversion = entry.version.parse().map_err(bad)?;
    let min: Microversion =
        if entry.min_version.is_empty() { Microversion::new(2, 1) } else { entry.min_version.parse().map_err(bad)? };
    Ok(Some((min, max)))
}

/// The microversion to send: the highest both sides understand.
pub fn negotiate(
    cloud: Option<(Microversion, Microversion)>,
    ours: (Microversion, Microversion),
) -> Result<Option<Microversion>, CloudError> {
    let Some((cloud_min, cloud_max)) = cloud else {
        return Ok(None);
    };
    let chosen = cloud_max.min(ours.1);
    if chosen < cloud_min || chosen < ours.0 {
        return Err(CloudError::Microversion {
            cloud_min: cloud_min.to_string(),
            cloud_max: cloud_max.to_string(),
            ours_min: ours.0.to_string(),
            ours_max: ours.1.to_string(),
        });
    }
    Ok(Some(chosen))
}

/// The URL of a compute endpoint's version document: the catalog URL cut after its `/v2.1` (or `/v2`) segment,
/// since catalogs often append the project id (`.../v2.1/<project>`).
pub fn compute_version_url(catalog_url: &str) -> Option<String> {
    let trimmed = catalog_url.trim_end_matches('/');
    let mut cut = None;
    let mut offset = 0;
    for segment in trimmed.split('/') {
        let end = offset + segment.len();
        if segment == "v2.1" || segment == "v2" {
            cut = Some(end);
        }
        offset = end + 1;
    }
    cut.map(|end| trimmed[..end].to_string())
}

/// An image endpoint's URL without a trailing `/v2` or `/v2.N`, the base for `/v2/...` paths.
pub fn unversioned(url: &str) -> &str {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((base, last))
            if last.starts_with('v')
                && last[1..].split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            base
        }
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(s: &str) -> Microversion {
        s.parse().unwrap_or(Microversion::new(0, 0))
    }

    #[test]
    fn negotiation_takes_the_lower_maximum() {
        let ours = (mv("2.1"), mv("2.100"));
        let check = |cloud: Option<(&str, &str)>, expected: Result<Option<&str>, ()>| {
            let got =
                negotiate(cloud.map(|(a, b)| (mv(a), mv(b))), ours).map(|o| o.map(|m| m.to_string())).map_err(|_| ());
            assert_eq!(got, expected.map(|o| o.map(String::from)), "cloud {cloud:?}");
        };
        check(Some(("2.1", "2.60")), Ok(Some("2.60")));
        check(Some(("2.1", "2.104")), Ok(Some("2.100")));
        check(Some(("2.1", "2.96")), Ok(Some("2.96")));
        check(Some(("2.101", "2.104")), Err(()));
        check(None, Ok(None));
        assert!(mv("2.100") > mv("2.96"), "minor versions compare as numbers");
    }

    #[test]
    fn compute_version_urls() {
        assert_eq!(compute_version_url("http://h/compute/v2.1").as_deref(), Some("http://h/compute/v2.1"));
        assert_eq!(compute_version_url("http://h:8774/v2.1/abc123/").as_deref(), Some("http://h:8774/v2.1"));
        assert_eq!(compute_version_url("http://h/compute"), None);
        assert_eq!(unversioned("http://h/image/v2/"), "http://h/image");
        assert_eq!(unversioned("http://h:9292"), "http://h:9292");
        assert_eq!(unversioned("http://h/image/v2.17"), "http://h/image");
        assert_eq!(unversioned("http://h/vendor"), "http://h/vendor");
    }
}
