//! Serving: the router that puts every service under its devstack-like prefix, the request-id and journal middleware, and start/stop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Service;
use crate::journal::JournalEntry;
use crate::state::{AppState, Config};
use crate::webob::{PageFormat, error_page};

/// The whole mock cloud as one router: `/identity`, `/image`, `/compute` and the mock-only `/mockstack`.
pub fn router(state: AppState) -> Router {
    Router::new()
        // A nested "/" does not match the prefix with a trailing slash; devstack URLs have both.
        .route("/identity/", axum::routing::get(crate::keystone::versions))
        .nest("/identity", crate::keystone::router())
        .route("/image/", axum::routing::get(crate::glance::versions))
        .nest("/image", crate::glance::router())
        .route("/compute/", axum::routing::get(crate::nova::versions))
        .nest("/compute", crate::nova::router())
        .nest("/mockstack", crate::admin::router())
        // Inside the request context: a faulted request gets its request id and is journaled like any other.
        .layer(middleware::from_fn_with_state(state.clone(), crate::faults::apply_faults))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// One route the router serves: a method on a path pattern, as its module's router spells it (`path`) under the
/// prefix that router is mounted at (`mount`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub mount: &'static str,
    pub path: &'static str,
}

impl Route {
    /// The full path pattern a client asks for: a nested router's `/` is its prefix itself.
    pub fn pattern(&self) -> String {
        if self.path == "/" && !self.mount.is_empty() {
            self.mount.to_string()
        } else {
            format!("{}{}", self.mount, self.path)
        }
    }
}

const fn route(method: &'static str, mount: &'static str, path: &'static str) -> Route {
    Route { method, mount, path }
}

const IDENTITY: &str = "/identity";
const IMAGE: &str = "/image";
const COMPUTE: &str = "/compute";
const COMPUTE_V21: &str = "/compute/v2.1";
const MOCKSTACK: &str = "/mockstack";

/// Every method on every path the router serves, kept beside [`router`] and the modules' routers. The isolation test
/// (`mockstack/tests/isolation.rs`) checks this list against every `.route(...)` call in the source and runs its
/// table over exactly these routes, so a route added to a router without a line here fails the tests. An axum `get`
/// also answers `HEAD`; only explicitly routed methods are listed.
pub const ROUTES: &[Route] = &[
    // server.rs: the services' roots with a trailing slash.
    route("GET", "", "/identity/"),
    route("GET", "", "/image/"),
    route("GET", "", "/compute/"),
    // keystone.rs
    route("GET", IDENTITY, "/"),
    route("GET", IDENTITY, "/v3"),
    route("GET", IDENTITY, "/v3/"),
    route("GET", IDENTITY, "/v3/auth/tokens"),
    route("HEAD", IDENTITY, "/v3/auth/tokens"),
    route("POST", IDENTITY, "/v3/auth/tokens"),
    route("DELETE", IDENTITY, "/v3/auth/tokens"),
    route("GET", IDENTITY, "/v3/auth/catalog"),
    route("GET", IDENTITY, "/v3/auth/projects"),
    route("GET", IDENTITY, "/v3/users/{user_id}"),
    route("GET", IDENTITY, "/v3/projects/{project_id}"),
    route("GET", IDENTITY, "/v3/projects"),
    route("GET", IDENTITY, "/v3/roles"),
    // glance/api.rs
    route("GET", IMAGE, "/"),
    route("GET", IMAGE, "/versions"),
    route("GET", IMAGE, "/v2/images"),
    route("POST", IMAGE, "/v2/images"),
    route("GET", IMAGE, "/v2/images/{image_id}"),
    route("PATCH", IMAGE, "/v2/images/{image_id}"),
    route("DELETE", IMAGE, "/v2/images/{image_id}"),
    route("GET", IMAGE, "/v2/images/{image_id}/file"),
    route("PUT", IMAGE, "/v2/images/{image_id}/file"),
    route("PUT", IMAGE, "/v2/images/{image_id}/tags/{tag}"),
    route("DELETE", IMAGE, "/v2/images/{image_id}/tags/{tag}"),
    route("GET", IMAGE, "/v2/images/{image_id}/members"),
    route("POST", IMAGE, "/v2/images/{image_id}/members"),
    route("GET", IMAGE, "/v2/images/{image_id}/members/{member_id}"),
    route("PUT", IMAGE, "/v2/images/{image_id}/members/{member_id}"),
    route("DELETE", IMAGE, "/v2/images/{image_id}/members/{member_id}"),
    route("POST", IMAGE, "/v2/images/{image_id}/actions/deactivate"),
    route("POST", IMAGE, "/v2/images/{image_id}/actions/reactivate"),
    route("GET", IMAGE, "/v2/schemas/image"),
    route("GET", IMAGE, "/v2/schemas/images"),
    route("GET", IMAGE, "/v2/schemas/member"),
    route("GET", IMAGE, "/v2/schemas/members"),
    route("GET", IMAGE, "/v2/info/import"),
    route("GET", IMAGE, "/v2/info/stores"),
    // nova/mod.rs
    route("GET", COMPUTE, "/"),
    route("GET", COMPUTE, "/v2.1/"),
    route("GET", COMPUTE_V21, "/"),
    // nova/flavors.rs
    route("GET", COMPUTE_V21, "/flavors"),
    route("POST", COMPUTE_V21, "/flavors"),
    route("GET", COMPUTE_V21, "/flavors/detail"),
    route("GET", COMPUTE_V21, "/flavors/{id}"),
    route("PUT", COMPUTE_V21, "/flavors/{id}"),
    route("DELETE", COMPUTE_V21, "/flavors/{id}"),
    route("GET", COMPUTE_V21, "/flavors/{id}/os-extra_specs"),
    route("POST", COMPUTE_V21, "/flavors/{id}/os-extra_specs"),
    route("GET", COMPUTE_V21, "/flavors/{id}/os-extra_specs/{key}"),
    route("PUT", COMPUTE_V21, "/flavors/{id}/os-extra_specs/{key}"),
    route("DELETE", COMPUTE_V21, "/flavors/{id}/os-extra_specs/{key}"),
    // nova/servers.rs
    route("GET", COMPUTE_V21, "/servers"),
    route("POST", COMPUTE_V21, "/servers"),
    route("GET", COMPUTE_V21, "/servers/detail"),
    route("GET", COMPUTE_V21, "/servers/{id}"),
    route("PUT", COMPUTE_V21, "/servers/{id}"),
    route("DELETE", COMPUTE_V21, "/servers/{id}"),
    // nova/server_actions.rs
    route("POST", COMPUTE_V21, "/servers/{id}/action"),
    // nova/instance_actions.rs
    route("GET", COMPUTE_V21, "/servers/{id}/os-instance-actions"),
    route("GET", COMPUTE_V21, "/servers/{id}/os-instance-actions/{request_id}"),
    // nova/consoles.rs
    route("POST", COMPUTE_V21, "/servers/{id}/remote-consoles"),
    // nova/shares.rs
    route("GET", COMPUTE_V21, "/servers/{id}/shares"),
    route("POST", COMPUTE_V21, "/servers/{id}/shares"),
    route("GET", COMPUTE_V21, "/servers/{id}/shares/{share_id}"),
    route("DELETE", COMPUTE_V21, "/servers/{id}/shares/{share_id}"),
    // admin.rs
    route("GET", MOCKSTACK, "/journal"),
    route("DELETE", MOCKSTACK, "/journal"),
    route("GET", MOCKSTACK, "/clock"),
    route("POST", MOCKSTACK, "/clock/advance"),
    route("GET", MOCKSTACK, "/faults"),
    route("PUT", MOCKSTACK, "/faults"),
    route("DELETE", MOCKSTACK, "/faults"),
    // nova/admin.rs, nova/consoles.rs (`pages`)
    route("GET", MOCKSTACK, "/servers/{id}/domain.xml"),
    route("GET", MOCKSTACK, "/compute/options"),
    route("PUT", MOCKSTACK, "/compute/options"),
    route("GET", MOCKSTACK, "/vnc_lite.html"),
];

/// Gives every response an `x-openstack-request-id`, ticks a manual clock, and journals the call.
async fn request_context(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    state.clock().on_request();
    let full_path = request.uri().path().to_string();
    let (service, service_name, path) = split_service(&full_path);
    if let Some(service) = service {
        request.extensions_mut().insert(service);
    }
    let method = request.method().to_string();
    let query = request.uri().query().map(String::from);
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    request.extensions_mut().insert(RequestId(request_id.clone()));
    catch_up_compute(&state);
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(String::from);
    let format = PageFormat::for_accept(accept.as_deref());

    let mut response = match bounded_body(service, path, format, request).await {
        Ok(request) => next.run(request).await,
        Err(page) => page,
    };
    // Read before webob's page replaces the response (and its extensions).
    let fault = response.extensions().get::<crate::faults::AppliedFault>().map(|f| f.0.clone());
    if service == Some(Service::Image) {
        response = as_webob_page(response, format);
    }

    let headers = response.headers_mut();
    let id_value = HeaderValue::from_str(&request_id).expect("request ids are ascii");
    if !answered_before_request_id(service, path) {
        headers.insert("x-openstack-request-id", id_value.clone());
        if service == Some(Service::Compute) {
            headers.insert("x-compute-request-id", id_value);
        }
    }
    let microversion = headers.get("openstack-api-version").and_then(|v| v.to_str().ok()).map(String::from);
    state.journal().record(JournalEntry {
        seq: 0,
        service: service_name.to_string(),
        method,
        path: path.to_string(),
        query,
        status: response.status().as_u16(),
        request_id,
        at_ms: state.clock().elapsed().as_millis() as u64,
        microversion,
        fault,
    });
    response
}

/// oslo.middleware's `max_request_body_size` default, which Keystone's and Nova's pipelines enforce (`sizelimit`).
pub const MAX_REQUEST_BODY: usize = 114_688;

/// The most a Glance JSON request body may hold here. The real Glance sets no limit and parses whatever comes; the
/// mock keeps its memory bounded, far above any real request.
pub const MAX_GLANCE_JSON_BODY: usize = 16 << 20;

/// Reads a request's body as the service's Python stack does before any handler: Keystone and Nova refuse one past
/// [`MAX_REQUEST_BODY`] with sizelimit's 413 page, and read a body cut off mid-stream as the bytes that came (none
/// worth parsing); Glance fails a cut-off body with webob's 500. Glance's image data streams past this untouched.
async fn bounded_body(
    service: Option<Service>,
    path: &str,
    format: PageFormat,
    request: Request,
) -> Result<Request, Response> {
    let limit = match service {
        Some(Service::Identity | Service::Compute) => MAX_REQUEST_BODY,
        Some(Service::Image) if !(path.ends_with("/file") || path.ends_with("/stage")) => MAX_GLANCE_JSON_BODY,
        _ => return Ok(request),
    };
    let too_large = || match service {
        Some(Service::Image) => error_page(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large.", format),
        _ => error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            // oslo.middleware's message, its placeholder never filled in.
            "Request is too large. Larger than max_request_body_size (%s).",
            format,
        ),
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await.map_err(is_length_limit) {
        Ok(bytes) => bytes,
        Err(true) => return Err(too_large()),
        Err(false) if service == Some(Service::Image) => {
            return Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server has either erred or is incapable of performing the requested operation.",
                format,
            ));
        }
        Err(false) => Default::default(),
    };
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn is_length_limit(error: axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error.into_inner());
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Glance's errors leave through webob, which writes them as HTML, JSON or plain text by the request's `Accept`: an
/// error a Glance handler answered is written again so.
fn as_webob_page(response: Response, format: PageFormat) -> Response {
    let Some(error) = response.extensions().get::<crate::error::ApiError>().filter(|e| e.service == Service::Image)
    else {
        return response;
    };
    let mut page = error_page(error.status, &error.message, format);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().insert(name, value.clone());
        }
    }
    page
}

/// A path whose percent-escapes are not UTF-8, made into one the routes can read as the services' WSGI stack reads
/// it: Keystone (werkzeug) decodes UTF-8 with replacement characters, Nova and Glance (webob) take each byte as
/// Latin-1. Each then answers for the id so spelt (a 404), never a framework's own 400. Other escapes stay as they
/// are. `None` when the path needs nothing.
pub fn readable_path(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let lossy = path.starts_with("/identity");
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        // A run of escapes, decoded together: a multi-byte character spans several.
        let start = i;
        let mut run = Vec::new();
        while i + 2 < bytes.len() && bytes[i] == b'%' {
            let Some(byte) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            else {
                break;
            };
            run.push(byte);
            i += 3;
        }
        if run.is_empty() {
            out.push('%');
            i += 1;
            continue;
        }
        if std::str::from_utf8(&run).is_ok() {
            out.push_str(&path[start..i]);
            continue;
        }
        changed = true;
        let text: String = if lossy {
            String::from_utf8_lossy(&run).into_owned()
        } else {
            run.iter().map(|b| char::from(*b)).collect()
        };
        for byte in text.bytes() {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    changed.then_some(out)
}

/// Rewrites a request's path with [`readable_path`] before it is routed.
pub async fn readable_paths(mut request: Request, next: Next) -> Response {
    if let Some(path) = readable_path(request.uri().path()) {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    next.run(request).await
}

/// Glance's and Nova's version documents come from middleware that answers before the request-id
/// middleware runs, so the real services send them without `x-openstack-request-id`.
fn answered_before_request_id(service: Option<Service>, path: &str) -> bool {
    match service {
        Some(Service::Image) => matches!(path, "/" | "/versions"),
        Some(Service::Compute) => path == "/",
        _ => false,
    }
}

/// The `x-openstack-request-id` of the request being answered (Nova records it in instance actions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Lets the compute side apply what became due on the virtual clock before any request is answered.
fn catch_up_compute(state: &AppState) {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread && state.nova().work_due(state) {
        // Snapshots copy disk files; keep that off the async workers' backs (leaving them costs a thread hand-off).
        tokio::task::block_in_place(|| state.nova().catch_up(state));
    } else {
        state.nova().catch_up(state);
    }
}

/// A path below its service's prefix (`/v2/images` for `/image/v2/images`); the path itself outside the services.
pub(crate) fn service_relative_path(path: &str) -> &str {
    split_service(path).2
}

fn split_service(path: &str) -> (Option<Service>, &str, &str) {
    for (prefix, service, name) in [
        ("/identity", Some(Service::Identity), "identity"),
        ("/image", Some(Service::Image), "image"),
        ("/compute", Some(Service::Compute), "compute"),
        ("/mockstack", None, "mockstack"),
    ] {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return (service, name, if rest.is_empty() { "/" } else { rest });
        }
    }
    (None, "", path)
}

/// Accepts connections until `shutdown` fires, then waits for the requests in flight.
///
/// Our own loop rather than `axum::serve`, which cannot bound the time a client takes to send its headers: without
/// that bound, clients that send half a request hold their connections open forever.
async fn serve<S>(
    listener: TcpListener,
    app: S,
    header_read_timeout: Duration,
    shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
    // Every connection holds a receiver: a send asks them to finish, and `closed()` waits until they all have.
    let (closing, _) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: the listener itself is fine, try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let answer = tower::ServiceExt::oneshot(app.clone(), request.map(Body::new));
            async move {
                let response = match answer.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                // A service error makes hyper close the connection without writing a response, which is what a
                // `drop_connection` fault asks for.
                if response.extensions().get::<crate::faults::DropConnection>().is_some() {
                    return Err(ConnectionDropped);
                }
                Ok(response)
            }
        });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(());
    closing.closed().await;
    Ok(())
}

/// The error that closes a connection a `drop_connection` fault chose.
#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a fault rule")
    }
}

impl std::error::Error for ConnectionDropped {}

/// A running mockstack; stops when [`MockStack::shutdown`] is called or it is dropped.
pub struct MockStack {
    state: AppState,
    addr: SocketAddr,
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockStack {
    /// Binds `listen` (use `127.0.0.1:0` for a free port) and serves in a background task.
    pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<MockStack> {
        let state = AppState::new(config)?;
        Self::start_with_state(state, listen).await
    }

    pub async fn start_with_state(state: AppState, listen: SocketAddr) -> std::io::Result<MockStack> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        state.set_base_url(url.clone());
        // Paths are made readable before routing: a route's parameters are taken from the path it was matched on.
        let app = tower::Layer::layer(&middleware::from_fn(readable_paths), router(state.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let header_read_timeout = state.config().header_read_timeout;
        let task = tokio::spawn(serve(listener, app, header_read_timeout, rx));
        Ok(MockStack { state, addr, url, shutdown: Some(tx), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Keystone endpoint clients authenticate against (`OS_AUTH_URL`).
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A clouds.yaml with `mockstack` (the admin) and `mockstack-<user>` for every user with a project, for the
    /// `openstack` CLI and any other clouds.yaml reader.
    pub fn clouds_yaml(&self) -> String {
        let yaml_str = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let ids = self.state.identities();
        let mut out = String::from("clouds:\n");
        for user in &ids.users {
            let Some(project_id) = user.roles.keys().next() else { continue };
            let Some(project) = ids.project(project_id) else { continue };
            let name = if user.name == "admin" { "mockstack".to_string() } else { format!("mockstack-{}", user.name) };
            out.push_str(&format!(
                "  {name}:\n    auth:\n      auth_url: {auth}\n      username: {user}\n      password: {pw}\n      project_name: {project}\n      user_domain_id: {ud}\n      project_domain_id: {pd}\n    region_name: {region}\n    interface: public\n    identity_api_version: 3\n",
                auth = self.auth_url(),
                user = yaml_str(&user.name),
                pw = yaml_str(&user.password),
                project = yaml_str(&project.name),
                ud = user.domain_id,
                pd = project.domain_id,
                region = self.state.config().region,
            ));
        }
        out
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for MockStack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
