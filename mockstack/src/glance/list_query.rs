//! Glance's listing query language (`GET /v2/images`): paging, sorting, the visibility and member-status filters, and the filter operators (`in:`, `eq:`, time comparisons), parsed with Glance's messages and applied to the tables.

use std::cmp::Ordering;

use jiff::Timestamp;

use super::model::{GlanceError, Image, MemberStatus, Visibility};
use super::policy::{Viewer, can_see, is_member};
use super::store::{GlanceState, ImageRecord, bad, forbidden};

/// `limit_param_default` and `api_limit_max`.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 1000;

/// Sort keys Glance accepts (`_available_sort_keys`).
pub const SORT_KEYS: [&str; 8] =
    ["name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at"];

/// A sort direction, as the query names it (`asc`, `desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum SortDir {
    Asc,
    Desc,
}

/// Which shared images a listing includes, by the caller's membership status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberFilter {
    Only(MemberStatus),
    All,
}

/// The visibility a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    Only(Visibility),
    All,
}

/// A parsed `GET /v2/images` query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    pub marker: Option<String>,
    pub member_status: MemberFilter,
    pub visibility: Option<VisibilityFilter>,
    pub tags: Vec<String>,
    pub os_hidden: bool,
    pub protected: Option<bool>,
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
    /// Filters on core columns (name, status, owner, formats, times, ...) or extra properties.
    pub filters: Vec<Filter>,
    pub sort: Vec<(String, SortDir)>,
}

/// One filter of a listing, with Glance's operators (`in:`, `eq:`, and comparisons on times).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A core column or an extra property equal to a value.
    Equals(String, String),
    /// `in:a,b,"c,d"`: one of the listed values (only on id, name, status and the formats).
    OneOf(String, Vec<String>),
    /// `created_at` or `updated_at` compared with a time.
    Time { key: String, op: TimeOp, at: Timestamp },
}

/// The comparison of a time filter, as the query names it (`gt:`, `gte:`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum TimeOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Neq,
    Eq,
}

/// The columns on which Glance accepts the `in:` operator.
const IN_COLUMNS: [&str; 5] = ["name", "id", "status", "container_format", "disk_format"];

/// An ISO 8601 time as oslo's `parse_isotime` reads it; without an offset it is UTC.
fn parse_isotime(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>()
        .ok()
        .or_else(|| text.parse::<jiff::civil::DateTime>().ok().and_then(|t| jiff::tz::Offset::UTC.to_timestamp(t).ok()))
}

/// Glance's `split_filter_op`: `op:value`, or the whole text compared for equality when it has
/// no colon or is itself an ISO 8601 time.
fn split_filter_op(expression: &str) -> (&str, &str) {
    match expression.split_once(':') {
        Some(_) if parse_isotime(expression).is_some() => ("eq", expression),
        Some((op, value)) => (op, value),
        None => ("eq", expression),
    }
}

/// Glance's `split_filter_value_for_quotes`: comma-separated values, double quotes around a value
/// that holds commas.
fn split_filter_values(value: &str) -> Result<Vec<String>, GlanceError> {
    let bytes: Vec<char> = value.chars().collect();
    let mut open = false;
    for (i, c) in bytes.iter().enumerate() {
        if *c != '"' || (i > 0 && bytes[i - 1] == '\\') {
            continue;
        }
        if !open && i > 0 && bytes[i - 1] != ',' {
            return Err(bad(format!("Invalid filter value {value}. There is no comma before opening quotation mark.")));
        }
        if open && i + 1 != bytes.len() && bytes[i + 1] != ',' {
            return Err(bad(format!("Invalid filter value {value}. There is no comma after closing quotation mark.")));
        }
        open = !open;
    }
    if open {
        return Err(bad(format!("Invalid filter value {value}. The quote is not closed.")));
    }
    let mut values = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            // The closing quote is the first one not escaped by a backslash (escapes are kept, as Glance keeps them).
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|(_, c)| {
                    let closes = *c == '"' && !escaped;
                    escaped = *c == '\\' && !escaped;
                    closes
                })
                .map_or(quoted.len(), |(i, _)| i);
            values.push(quoted[..end].to_string());
            rest = quoted.get(end + 1..).unwrap_or("");
            rest = rest.strip_prefix(',').unwrap_or(rest);
        } else if let Some(after) = rest.strip_prefix(',') {
            values.push(String::new());
            rest = after;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            values.push(rest[..end].to_string());
            rest = rest.get(end + 1..).unwrap_or("");
        }
    }
    Ok(values)
}

fn parse_filter(key: &str, value: &str) -> Result<Filter, GlanceError> {
    if key == "created_at" || key == "updated_at" {
        let (op, time) = split_filter_op(value);
        let at = parse_isotime(time)
            .ok_or_else(|| bad(format!("Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation.")))?;
        let op = op.parse().map_err(|_| bad(format!("Unable to filter by unknown operator '{op}'.")))?;
        return Ok(Filter::Time { key: key.to_string(), op, at });
    }
    if IN_COLUMNS.contains(&key) {
        return match split_filter_op(value) {
            ("in", list) => Ok(Filter::OneOf(key.to_string(), split_filter_values(list)?)),
            ("eq", v) => Ok(Filter::Equals(key.to_string(), v.to_string())),
            (other, _) => Err(bad(format!("Unable to filter by unknown operator '{other}'."))),
        };
    }
    Ok(Filter::Equals(key.to_string(), value.to_string()))
}

impl Filter {
    fn selects(&self, image: &Image) -> bool {
        match self {
            Filter::Equals(k, v) => match column(image, k) {
                Some(col) => col.as_deref() == Some(v.as_str()),
                None => image.properties.get(k) == Some(v),
            },
            Filter::OneOf(k, values) => column(image, k).flatten().is_some_and(|col| values.contains(&col)),
            Filter::Time { key, op, at } => {
                let value = if key == "created_at" { image.created_at } else { image.updated_at };
                match op {
                    TimeOp::Gt => value > *at,
                    TimeOp::Gte => value >= *at,
                    TimeOp::Lt => value < *at,
                    TimeOp::Lte => value <= *at,
                    TimeOp::Neq => value != *at,
                    TimeOp::Eq => value == *at,
                }
            }
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub images: Vec<Image>,
    pub next_marker: Option<String>,
}

fn parse_dir(s: &str) -> Result<SortDir, GlanceError> {
    s.parse().map_err(|_| bad(format!("Invalid sort direction: {s}")))
}

fn parse_sort_key(s: &str) -> Result<String, GlanceError> {
    if SORT_KEYS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(bad(format!("Invalid sort key: {s}. It must be one of the following: {}.", SORT_KEYS.join(", "))))
    }
}

/// Core columns a filter compares directly (other names filter extra properties).
fn column(image: &Image, key: &str) -> Option<Option<String>> {
    Some(match key {
        "id" => Some(image.id.clone()),
        "name" => image.name.clone(),
        "status" => Some(image.status.to_string()),
        "owner" => image.owner.clone(),
        "disk_format" => image.disk_format.clone(),
        "container_format" => image.container_format.clone(),
        "checksum" => image.checksum.clone(),
        "os_hash_algo" => image.os_hash_algo.clone(),
        "os_hash_value" => image.os_hash_value.clone(),
        "size" => image.size.map(|s| s.to_string()),
        "virtual_size" => image.virtual_size.map(|s| s.to_string()),
        "min_disk" => Some(image.min_disk.to_string()),
        "min_ram" => Some(image.min_ram.to_string()),
        _ => return None,
    })
}

impl ListQuery {
    /// Parses query parameters (in request order) as Glance's deserializer and controller do.
    pub fn from_params(params: &[(String, String)]) -> Result<ListQuery, GlanceError> {
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            marker: None,
            member_status: MemberFilter::Only(MemberStatus::Accepted),
            visibility: None,
            tags: Vec::new(),
            os_hidden: false,
            protected: None,
            size_min: None,
            size_max: None,
            filters: Vec::new(),
            sort: Vec::new(),
        };
        let has = |k: &str| params.iter().any(|(key, _)| key == k);
        let (mut sort_keys, mut sort_dirs) = (Vec::new(), Vec::new());
        if has("sort") && (has("sort_key") || has("sort_dir")) {
            return Err(bad("Old and new sorting syntax cannot be combined"));
        }
        for (key, value) in params {
            match key.as_str() {
                "limit" => {
                    let n: i64 = value.trim().parse().map_err(|_| bad("limit param must be an integer"))?;
                    if n < 0 {
                        return Err(bad("limit param must be positive"));
                    }
                    query.limit = (n as usize).min(MAX_LIMIT);
                }
                "marker" => query.marker = Some(value.clone()),
                "member_status" => {
                    query.member_status = match value.as_str() {
                        "all" => MemberFilter::All,
                        s => MemberFilter::Only(s.parse().map_err(|_| bad(format!("Invalid status: {s}")))?),
                    }
                }
                "tag" => query.tags.push(value.trim().to_string()),
                "sort" => {
                    for part in value.trim().split(',') {
                        let (k, d) = part.split_once(':').unwrap_or((part, ""));
                        let d = if d.is_empty() { "desc" } else { d };
                        query.sort.push((parse_sort_key(k.trim())?, parse_dir(d.trim())?));
                    }
                }
                "sort_key" => sort_keys.push(parse_sort_key(value.trim())?),
                "sort_dir" => sort_dirs.push(parse_dir(value.trim())?),
                "visibility" if !value.is_empty() => {
                    query.visibility = Some(match value.as_str() {
                        "all" => VisibilityFilter::All,
                        v => VisibilityFilter::Only(
                            v.parse().map_err(|_| bad(format!("Invalid visibility value: {v}")))?,
                        ),
                    })
                }
                "changes-since" if !value.is_empty() => {
                    return Err(bad("The \"changes-since\" filter is no longer available on v2."));
                }
                "os_hidden" => match value.to_lowercase().as_str() {
                    "true" => query.os_hidden = true,
                    "false" => query.os_hidden = false,
                    v => {
                        return Err(bad(format!(
                            "Invalid value '{v}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                },
                "protected" => match value.as_str() {
                    "true" => query.protected = Some(true),
                    "false" => query.protected = Some(false),
                    v => {
                        return Err(bad(format!(
                            "Invalid value '{v}' for 'protected' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                },
                "size_min" | "size_max" => {
                    let n: u64 = value
                        .trim()
                        .parse()
                        .map_err(|_| bad("Unable to filter on a range with a non-numeric value."))?;
                    if key == "size_min" {
                        query.size_min = Some(n);
                    } else {
                        query.size_max = Some(n);
                    }
                }
                _ => query.filters.push(parse_filter(key, value)?),
            }
        }
        if !has("sort") {
            if sort_dirs.len() > 1 && sort_dirs.len() != sort_keys.len() {
                return Err(bad("Number of sort dirs does not match the number of sort keys"));
            }
            if sort_keys.is_empty() {
                sort_keys.push("created_at".to_string());
            }
            for (i, key) in sort_keys.into_iter().enumerate() {
                let dir = sort_dirs.get(i).or(sort_dirs.first()).copied().unwrap_or(SortDir::Desc);
                query.sort.push((key, dir));
            }
        }
        Ok(query)
    }

    /// The sort keys with Glance's `created_at`, `id` tie-breakers appended.
    fn effective_sort(&self) -> Vec<(String, SortDir)> {
        let mut sort = self.sort.clone();
        let default_dir = if sort.len() == 1 { sort[0].1 } else { SortDir::Desc };
        for key in ["created_at", "id"] {
            if !sort.iter().any(|(k, _)| k == key) {
                sort.push((key.to_string(), default_dir));
            }
        }
        sort
    }

    fn selects(&self, record: &ImageRecord, viewer: &Viewer) -> bool {
        let image = &record.image;
        let own = image.owner.as_deref() == Some(viewer.project_id.as_str());
        let member_ok = match self.member_status {
            MemberFilter::All => is_member(record, &viewer.project_id, None),
            MemberFilter::Only(s) => is_member(record, &viewer.project_id, Some(s)),
        };
        let reachable = viewer.admin
            || own
            || matches!(image.visibility, Visibility::Public | Visibility::Community)
            || (image.visibility == Visibility::Shared && member_ok);
        let visibility_ok = match self.visibility {
            Some(VisibilityFilter::All) => true,
            Some(VisibilityFilter::Only(v)) => image.visibility == v,
            None => image.visibility != Visibility::Community || own,
        };
        reachable
            && visibility_ok
            && image.os_hidden == self.os_hidden
            && self.protected.is_none_or(|p| image.protected == p)
            && self.size_min.is_none_or(|min| image.size.is_some_and(|s| s >= min))
            && self.size_max.is_none_or(|max| image.size.is_some_and(|s| s <= max))
            && self.tags.iter().all(|t| image.tags.contains(t))
            && self.filters.iter().all(|f| f.selects(image))
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Text(Option<String>),
    Number(Option<u64>),
    Time(Timestamp, u64),
}

fn sort_value(record: &ImageRecord, key: &str) -> SortValue {
    let image = &record.image;
    match key {
        "name" => SortValue::Text(image.name.clone()),
        "status" => SortValue::Text(Some(image.status.to_string())),
        "container_format" => SortValue::Text(image.container_format.clone()),
        "disk_format" => SortValue::Text(image.disk_format.clone()),
        "size" => SortValue::Number(image.size),
        "created_at" => SortValue::Time(image.created_at, record.seq),
        "updated_at" => SortValue::Time(image.updated_at, record.seq),
        _ => SortValue::Text(Some(image.id.clone())),
    }
}

fn compare(a: &ImageRecord, b: &ImageRecord, sort: &[(String, SortDir)]) -> Ordering {
    for (key, dir) in sort {
        let ord = sort_value(a, key).cmp(&sort_value(b, key));
        let ord = if *dir == SortDir::Desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

impl GlanceState {
    /// `GET /v2/images`.
    pub fn list(&self, viewer: &Viewer, query: &ListQuery) -> Result<ListPage, GlanceError> {
        let tables = self.tables();
        let mut matching: Vec<&ImageRecord> = tables.images.values().filter(|r| query.selects(r, viewer)).collect();
        let sort = query.effective_sort();
        matching.sort_by(|a, b| compare(a, b, &sort));
        if let Some(marker) = &query.marker {
            let marker_record =
                tables.images.get(marker).ok_or_else(|| bad(format!("No image found with ID {marker}")))?;
            if !can_see(marker_record, viewer) {
                return Err(forbidden(format!("Forbidding request, image {marker} not visible")));
            }
            matching.retain(|r| compare(r, marker_record, &sort) == Ordering::Greater);
        }
        matching.truncate(query.limit);
        let images: Vec<Image> = matching.iter().map(|r| r.image.clone()).collect();
        let next_marker =
            (!images.is_empty() && images.len() == query.limit).then(|| images[images.len() - 1].id.clone());
        Ok(ListPage { images, next_marker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glance::store::tests::{body, glance};
    use serde_json::json;

    #[test]
    fn filter_values_split_like_glance() {
        assert_eq!(split_filter_values("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_filter_values(r#""a,b",c"#).unwrap(), ["a,b", "c"]);
        assert_eq!(split_filter_values(r#"x,"q\"uote",y"#).unwrap(), ["x", r#"q\"uote"#, "y"]);
        assert_eq!(split_filter_values("a,,b").unwrap(), ["a", "", "b"]);
        assert!(split_filter_values(r#"a"b""#).unwrap_err().to_string().contains("no comma before"));
        assert!(split_filter_values(r#""a"b"#).unwrap_err().to_string().contains("no comma after"));
        assert!(split_filter_values(r#""a"#).unwrap_err().to_string().contains("not closed"));
    }

    #[test]
    fn list_filters_take_glances_operators() {
        let (_dir, g) = glance();
        let alice = Viewer::member_of("alpha");
        let ids: Vec<String> =
            ["one", "two", "three"].iter().map(|n| g.create(&alice, body(json!({"name": n}))).unwrap().id).collect();
        let names = |params: &[(&str, &str)]| -> Result<Vec<String>, String> {
            let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let query = ListQuery::from_params(&params).map_err(|e| e.to_string())?;
            let mut names: Vec<String> =
                g.list(&alice, &query).unwrap().images.into_iter().filter_map(|i| i.name).collect();
            names.sort();
            Ok(names)
        };
        let in_ids = format!("in:{},{}", ids[0], ids[2]);
        assert_eq!(names(&[("id", &in_ids)]).unwrap(), ["one", "three"]);
        assert_eq!(names(&[("name", "in:two,\"one\"")]).unwrap(), ["one", "two"]);
        assert_eq!(names(&[("name", "eq:two")]).unwrap(), ["two"]);
        assert_eq!(names(&[("status", "in:queued,active")]).unwrap(), ["one", "three", "two"]);
        assert!(names(&[("name", "like:t")]).unwrap_err().contains("Unable to filter by unknown operator 'like'."));
        assert_eq!(names(&[("created_at", "gte:2000-01-01T00:00:00Z")]).unwrap(), ["one", "three", "two"]);
        assert!(names(&[("created_at", "lt:2000-01-01T00:00:00")]).unwrap().is_empty());
        assert!(names(&[("updated_at", "gt:yesterday")]).unwrap_err().contains("Use ISO 8601 DateTime notation"));
        // Extra properties compare the whole value, colon and all.
        assert!(names(&[("os_distro", "in:ubuntu")]).unwrap().is_empty());
    }

    #[test]
    fn list_queries_parse_like_glance() {
        let p = |q: &[(&str, &str)]| {
            let params: Vec<(String, String)> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ListQuery::from_params(&params)
        };
        let err = |q: &[(&str, &str)]| p(q).unwrap_err().to_string();
        assert_eq!(p(&[]).unwrap().sort, vec![("created_at".to_string(), SortDir::Desc)]);
        assert_eq!(
            p(&[("sort", "name:asc,size")]).unwrap().sort,
            vec![("name".into(), SortDir::Asc), ("size".into(), SortDir::Desc)]
        );
        assert_eq!(
            p(&[("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc")]).unwrap().sort,
            vec![("name".into(), SortDir::Asc), ("size".into(), SortDir::Asc)]
        );
        assert_eq!(p(&[("limit", "5000")]).unwrap().limit, MAX_LIMIT);
        assert_eq!(err(&[("limit", "x")]), "bad request: limit param must be an integer");
        assert_eq!(err(&[("limit", "-1")]), "bad request: limit param must be positive");
        assert_eq!(
            err(&[("sort_key", "owner")]),
            "bad request: Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at."
        );
        assert_eq!(err(&[("sort_dir", "up")]), "bad request: Invalid sort direction: up");
        assert_eq!(
            err(&[("sort", "name"), ("sort_key", "name")]),
            "bad request: Old and new sorting syntax cannot be combined"
        );
        assert_eq!(
            err(&[("sort_key", "name"), ("sort_dir", "asc"), ("sort_dir", "desc"), ("sort_dir", "asc")]),
            "bad request: Number of sort dirs does not match the number of sort keys"
        );
        assert_eq!(err(&[("visibility", "everyone")]), "bad request: Invalid visibility value: everyone");
        assert_eq!(err(&[("member_status", "maybe")]), "bad request: Invalid status: maybe");
        assert_eq!(
            err(&[("os_hidden", "maybe")]),
            "bad request: Invalid value 'maybe' for 'os_hidden' filter. Valid values are 'true' or 'false'."
        );
        assert_eq!(err(&[("size_min", "big")]), "bad request: Unable to filter on a range with a non-numeric value.");
    }
}
