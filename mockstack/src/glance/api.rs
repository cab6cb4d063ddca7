//! Glance v2 over HTTP: version discovery, images, JSON-patch, tags, members, data upload/download with Range, schemas and info, each answering with Glance's status codes, headers and error bodies.

use crate::query::quote_plus;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::data::DataSink;
use super::image_data::too_large;
use super::list_query::{ListPage, ListQuery};
use super::model::{GlanceError, Image};
use super::patch::{self, Dialect};
use super::policy::Viewer;
use super::schema;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(versions))
        .route("/versions", get(versions_explicit))
        .route("/v2/images", get(list_images).post(create_image))
        .route("/v2/images/{image_id}", get(show_image).patch(update_image).delete(delete_image))
        .route("/v2/images/{image_id}/file", get(download).put(upload))
        .route("/v2/images/{image_id}/tags/{tag}", put(add_tag).delete(remove_tag))
        .route("/v2/images/{image_id}/members", get(list_members).post(add_member))
        .route("/v2/images/{image_id}/members/{member_id}", get(show_member).put(update_member).delete(delete_member))
        .route("/v2/images/{image_id}/actions/deactivate", post(deactivate))
        .route("/v2/images/{image_id}/actions/reactivate", post(reactivate))
        // Schemas have no policy but sit behind keystonemiddleware like every `/v2` route: a token is needed.
        .route("/v2/schemas/image", get(|_: Caller| async { Json(schema::image_schema()) }))
        .route("/v2/schemas/images", get(|_: Caller| async { Json(schema::images_schema()) }))
        .route("/v2/schemas/member", get(|_: Caller| async { Json(schema::member_schema()) }))
        .route("/v2/schemas/members", get(|_: Caller| async { Json(schema::members_schema()) }))
        .route("/v2/info/import", get(info_import))
        .route("/v2/info/stores", get(info_stores))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

impl From<GlanceError> for ApiError {
    fn from(e: GlanceError) -> ApiError {
        ApiError::image(e.status(), e.glance_message())
    }
}

fn viewer(caller: &Caller) -> Viewer {
    Viewer { project_id: caller.project_id().to_string(), admin: caller.is_admin(), writer: caller.can_write() }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::image(StatusCode::BAD_REQUEST, msg)
}

async fn not_found() -> ApiError {
    ApiError::image(StatusCode::NOT_FOUND, "The resource could not be found.")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::image(StatusCode::METHOD_NOT_ALLOWED, format!("The method {method} is not allowed for this resource."))
}

/// A 204 as Glance sends it: webob labels even an empty answer `text/html`.
fn no_content() -> Response {
    (StatusCode::NO_CONTENT, [(header::CONTENT_TYPE, "text/html; charset=UTF-8")]).into_response()
}

// ----- discovery -----

fn versions_body(state: &AppState) -> Value {
    let href = format!("{}/v2/", state.image_url());
    // What a Glance without image cache and without multiple stores advertises, in its order.
    let mut versions = vec![("2.15", "SUPPORTED"), ("2.9", "SUPPORTED"), ("2.17", "CURRENT")];
    versions.extend(["2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0"].map(|v| (v, "SUPPORTED")));
    let values: Vec<Value> = versions
        .into_iter()
        .map(|(id, status)| json!({"id": format!("v{id}"), "status": status, "links": [{"rel": "self", "href": href}]}))
        .collect();
    json!({ "versions": values })
}

/// `GET /image/`: 300 Multiple Choices with the versions list, as Glance's version negotiation answers.
pub async fn versions(State(state): State<AppState>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(versions_body(&state))).into_response()
}

/// `GET /image/versions`: the same list, asked for explicitly, so 200.
async fn versions_explicit(State(state): State<AppState>) -> Response {
    (StatusCode::OK, Json(versions_body(&state))).into_response()
}

async fn info_import(_caller: Caller) -> Json<Value> {
    // Interoperable import is not offered (Glance with `enabled_import_methods = []`).
    Json(json!({"import-methods": {"description": "Import methods available.", "type": "array", "value": []}}))
}

async fn info_stores(_caller: Caller) -> ApiError {
    ApiError::image(StatusCode::NOT_FOUND, "Multi backend is not supported at this site.")
}

// ----- request bodies -----

/// Reads a JSON body as Glance's `JSONRequestDeserializer` does, with its 400s.
async fn json_body(body: Body) -> Result<Value, ApiError> {
    // The body was read and bounded before routing (`server::bounded_body`).
    let bytes = axum::body::to_bytes(body, crate::server::MAX_GLANCE_JSON_BODY)
        .await
        .map_err(|_| ApiError::image(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large."))?;
    if bytes.is_empty() {
        return Err(bad_request("Body expected in request."));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad_request("Malformed JSON in request body."))?;
    if !(value.is_object() || value.is_array()) {
        return Err(bad_request("Unexpected body type. Expected list/dict."));
    }
    Ok(value)
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

// ----- images -----

fn image_response(status: StatusCode, image: &Image) -> Response {
    (status, Json(image.to_json())).into_response()
}

async fn create_image(caller: Caller, State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let value = json_body(body).await?;
    let Value::Object(fields) = value else {
        return Err(bad_request(format!(
            "Provided object does not match schema 'image': {} is not of type 'object'",
            crate::python::py_repr(&value)
        )));
    };
    let image = state.glance().create(&viewer(&caller), fields)?;
    let mut response = image_response(StatusCode::CREATED, &image);
    let location = format!("{}/v2/images/{}", state.image_url(), image.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn show_image(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let image = state.glance().show(&viewer(&caller), &id)?;
    Ok(image_response(StatusCode::OK, &image))
}

/// `urlencode(dict(params))`: one entry per key (the last value), in first-seen order.
fn urlencode_dict(params: &[(String, String)]) -> String {
    let mut dict: Vec<(&str, &str)> = Vec::new();
    for (k, v) in params {
        match dict.iter_mut().find(|(key, _)| *key == k) {
            Some(entry) => entry.1 = v,
            None => dict.push((k, v)),
        }
    }
    dict.iter().map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v))).collect::<Vec<_>>().join("&")
}

fn list_body(page: &ListPage, params: &[(String, String)]) -> Value {
    let without_marker: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "marker").cloned().collect();
    let query = urlencode_dict(&without_marker);
    let mut body = Map::new();
    body.insert("images".into(), Value::Array(page.images.iter().map(Image::to_json).collect()));
    let first = if query.is_empty() { "/v2/images".to_string() } else { format!("/v2/images?{query}") };
    body.insert("first".into(), json!(first));
    body.insert("schema".into(), json!("/v2/schemas/images"));
    if let Some(marker) = &page.next_marker {
        let mut next_params = without_marker;
        next_params.push(("marker".into(), marker.clone()));
        body.insert("next".into(), json!(format!("/v2/images?{}", urlencode_dict(&next_params))));
    }
    Value::Object(body)
}

async fn list_images(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(|e| bad_request(format!("Invalid query string: {}", e.body_text())))?;
    let list_query = ListQuery::from_params(&params)?;
    let page = state.glance().list(&viewer(&caller), &list_query)?;
    Ok(Json(list_body(&page, &params)))
}

async fn update_image(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(dialect) = content_type(&headers).and_then(Dialect::from_content_type) else {
        let allowed = format!("{}, {}", patch::PATCH_V20, patch::PATCH_V21);
        let received = content_type(&headers).unwrap_or("None");
        let mut response = ApiError::image(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "The request media type {received} is not supported by this server. \
                 Image PATCH expects Content-Type one of: {allowed}"
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allowed) {
            response.headers_mut().insert("accept-patch", v);
        }
        return Ok(response);
    };
    let value = json_body(body).await?;
    let changes = patch::parse(&value, dialect)?;
    let image = state.glance().update(&viewer(&caller), &id, &changes)?;
    Ok(image_response(StatusCode::OK, &image))
}

async fn delete_image(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.glance().delete(&viewer(&caller), &id)?;
    Ok(no_content())
}

async fn add_tag(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.glance().add_tag(&viewer(&caller), &id, &tag)?;
    Ok(no_content())
}

async fn remove_tag(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.glance().remove_tag(&viewer(&caller), &id, &tag)?;
    Ok(no_content())
}

async fn deactivate(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.glance().set_active(&viewer(&caller), &id, false)?;
    Ok(no_content())
}

async fn reactivate(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.glance().set_active(&viewer(&caller), &id, true)?;
    Ok(no_content())
}

// ----- members -----

async fn list_members(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let members = state.glance().members(&viewer(&caller), &id)?;
    let values: Vec<Value> = members.iter().map(|m| m.to_json()).collect();
    Ok(Json(json!({"members": values, "schema": "/v2/schemas/members"})))
}

async fn add_member(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let value = json_body(body).await?;
    let Value::Object(map) = value else {
        return Err(bad_request("Expected a member in the form: {\"member\": \"image_id\"}"));
    };
    let Some(given) = map.get("member") else {
        return Err(bad_request("Member to be added not specified"));
    };
    // Glance tests the value's truth as Python does, then keeps it as given: the answer echoes it (`5` stays a
    // number), while the database, and so every later read, holds its `str()`.
    if python_falsy(given) {
        return Err(bad_request("Member can't be empty"));
    }
    let member = state.glance().add_member(&viewer(&caller), &id, &crate::python::py_str(given))?;
    let mut answer = member.to_json();
    answer["member_id"] = given.clone();
    Ok(Json(answer))
}

/// Python's truth test of a JSON value: `None`, `False`, zero, and empty strings, lists and objects are false.
fn python_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

async fn show_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, member_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let member = state.glance().member(&viewer(&caller), &id, &member_id)?;
    Ok(Json(member.to_json()))
}

async fn update_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, member_id)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let value = json_body(body).await?;
    let Value::Object(map) = value else {
        return Err(bad_request("Expected a status in the form: {\"status\": \"status\"}"));
    };
    let status = match map.get("status") {
        None => return Err(bad_request("Status not specified")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let member = state.glance().update_member(&viewer(&caller), &id, &member_id, &status)?;
    Ok(Json(member.to_json()))
}

async fn delete_member(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, member_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.glance().delete_member(&viewer(&caller), &id, &member_id)?;
    Ok(no_content())
}

// ----- data -----

async fn upload(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let received = content_type(&headers);
    let media = received.map(|c| c.split(';').next().unwrap_or("").trim());
    if media != Some("application/octet-stream") {
        let shown = received.unwrap_or("None");
        return Err(ApiError::image(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("The request media type {shown} is not supported by this server. Invalid content type {shown}"),
        ));
    }
    let glance = state.glance();
    let cap = glance.size_cap();
    // The ticket puts the image back to `queued` and removes the partial file if this handler
    // returns early or is dropped because the client went away.
    let ticket = glance.begin_upload(&viewer(&caller), &id)?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large().into());
    }
    let mut sink = DataSink::create(ticket.partial_path()).map_err(GlanceError::Io)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes =
            chunk.map_err(|e| bad_request(format!("The image data could not be read from the request: {e}")))?;
        if sink.size() + chunk.len() as u64 > cap {
            return Err(too_large().into());
        }
        sink.push(chunk).await.map_err(GlanceError::Io)?;
    }
    let digests = sink.finish().await.map_err(GlanceError::Io)?;
    glance.finish_upload(ticket, digests)?;
    Ok(no_content())
}

/// The part of an image a `Range` header asks for, as Glance serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    offset: u64,
    length: u64,
    /// The last byte `Content-Range` names: Glance computes it as `size - 1` for an open or suffix range, which is
    /// -1 for an empty image ("bytes 0--1/0").
    last: i128,
}

/// A `Range` header as Glance reads it: webob's `bytes=START-END` (END inclusive), `bytes=START-` or
/// `bytes=-SUFFIX`, then Glance's checks (`get_range_from_request`) and its arithmetic (`download`).
fn parse_range(value: &str, size: u64) -> Result<ByteRange, ApiError> {
    if value.contains(',') {
        return Err(bad_request(
            "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests \
             instead.",
        ));
    }
    let unsatisfiable = |m: String| ApiError::image(StatusCode::RANGE_NOT_SATISFIABLE, m);
    let invalid = || unsatisfiable("Invalid Range header.".into());
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let (start, end) = (start.trim(), end.trim());
    let whole_from = |offset: u64| ByteRange { offset, length: size - offset, last: i128::from(size) - 1 };
    if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| invalid())?;
        if suffix == 0 {
            return Err(invalid());
        }
        // A suffix longer than the image is the whole image.
        return Ok(whole_from(size.saturating_sub(suffix)));
    }
    let start: u64 = start.parse().map_err(|_| invalid())?;
    let end: Option<u64> = if end.is_empty() { None } else { Some(end.parse().map_err(|_| invalid())?) };
    if end.is_some_and(|e| e < start) {
        return Err(invalid());
    }
    if start >= size {
        return Err(unsatisfiable(format!(
            "Invalid start position in Range header. Start position MUST be in the inclusive range [0, {}].",
            i128::from(size) - 1
        )));
    }
    Ok(match end {
        Some(end) if end + 1 < size => ByteRange { offset: start, length: end + 1 - start, last: i128::from(end) },
        _ => whole_from(start),
    })
}

async fn download(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (image, path) = state.glance().download(&viewer(&caller), &id)?;
    let Some(path) = path else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = image.size.unwrap_or(0);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => Some(parse_range(r, size)?),
        None => None,
    };
    let ByteRange { offset, length, last } = range.unwrap_or(ByteRange { offset: 0, length: size, last: 0 });
    let mut file = tokio::fs::File::open(&path).await.map_err(GlanceError::Io)?;
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(GlanceError::Io)?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(length), 256 * 1024);
    let status = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length.to_string());
    if range.is_some() {
        response = response.header(header::CONTENT_RANGE, format!("bytes {offset}-{last}/{size}"));
    }
    if let Some(checksum) = &image.checksum {
        response = response.header("content-md5", checksum.as_str());
    }
    response
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::image(StatusCode::INTERNAL_SERVER_ERROR, format!("could not build the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_webob_and_glance() {
        let ok = |offset, length, last| Ok::<_, &str>(ByteRange { offset, length, last });
        for (header, size, expected) in [
            ("bytes=0-4", 10, ok(0, 5, 4)),
            ("bytes=5-", 10, ok(5, 5, 9)),
            ("bytes=-3", 10, ok(7, 3, 9)),
            ("bytes=-30", 10, ok(0, 10, 9)),
            ("bytes=8-20", 10, ok(8, 2, 9)),
            // An empty image: the suffix is the whole (empty) image, and Glance names its last byte -1.
            ("bytes=-5", 0, ok(0, 0, -1)),
            (
                "bytes=10-",
                10,
                Err("Invalid start position in Range header. Start position MUST be in the inclusive range [0, 9]."),
            ),
            (
                "bytes=0-",
                0,
                Err("Invalid start position in Range header. Start position MUST be in the inclusive range [0, -1]."),
            ),
            ("bytes=5-2", 10, Err("Invalid Range header.")),
            (
                "bytes=0-1,3-4",
                10,
                Err(
                    "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests instead.",
                ),
            ),
            ("items=0-1", 10, Err("Invalid Range header.")),
        ] {
            let got = parse_range(header, size).map_err(|e| e.message);
            assert_eq!(got, expected.map_err(String::from), "{header}");
        }
        assert_eq!(parse_range("bytes=0-1,3-4", 10).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(parse_range("bytes=5-2", 10).unwrap_err().status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn links_encode_like_python() {
        let params: Vec<(String, String)> = [("name", "a b/c"), ("limit", "2"), ("marker", "m"), ("limit", "3")]
            .map(|(k, v)| (k.into(), v.into()))
            .to_vec();
        let page = ListPage { images: vec![], next_marker: Some("next-id".into()) };
        let body = list_body(&page, &params);
        assert_eq!(body["first"], "/v2/images?name=a+b%2Fc&limit=3");
        assert_eq!(body["next"], "/v2/images?name=a+b%2Fc&limit=3&marker=next-id");
    }
}
