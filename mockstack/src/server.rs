//! Serving: the router that puts every service under its devstack-like prefix, the request-id and journal middleware, and start/stop.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Service;
use crate::journal::JournalEntry;
use crate::state::{AppState, Config};

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
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

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

    let mut response = next.run(request).await;

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
    });
    response
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
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
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
