//! The OpenStack cloud client: clouds.yaml and OS_* configuration, Keystone v3 auth, catalog, retries and typed Glance/Nova calls.
//!
//! Nothing here knows about mockstack: the same code talks to any Keystone v3 / Glance v2 / Nova v2.1 cloud.
//! Entry point: [`Cloud::connect`] with a [`CloudConfig`] from [`config::load`] (or [`config::resolve`]).

pub mod auth;
pub mod catalog;
pub mod config;
pub mod error;
pub mod glance;
pub mod http;
pub mod nova;
pub mod secret;
pub mod transfer;

use std::sync::Arc;

use tokio::sync::OnceCell;

pub use auth::{Session, SessionOptions, Token};
pub use config::{AuthMethod, CloudConfig, ConfigError, ConfigRequest};
pub use error::{ApiFailure, CloudError};
pub use glance::Glance;
pub use http::{CallLog, CallRecord, HttpOptions, RetryPolicy};
pub use nova::Nova;
pub use secret::Secret;

/// Client behaviour that is not cloud configuration.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub http: HttpOptions,
    pub session: SessionOptions,
}

/// A connection to one cloud region: an authenticated session plus the discovered Glance and Nova endpoints.
/// Cheap to clone; clones share the token, the endpoints and the call log.
#[derive(Clone)]
pub struct Cloud {
    session: Arc<Session>,
    image: Arc<OnceCell<Glance>>,
    compute: Arc<OnceCell<Nova>>,
}

impl Cloud {
    /// Authenticates (so bad credentials fail here, not in the middle of a run).
    pub async fn connect(config: CloudConfig, mut options: ClientOptions) -> Result<Cloud, CloudError> {
        if let Some(timeout) = config.api_timeout {
            options.http.request_timeout = timeout;
        }
        let http = http::Http::new(options.http, &config.tls)?;
        let session = Arc::new(Session::new(http, config, options.session));
        session.token().await?;
        Ok(Cloud { session, image: Arc::default(), compute: Arc::default() })
    }

    pub fn config(&self) -> &CloudConfig {
        self.session.config()
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Every HTTP attempt so far, for run reports.
    pub fn call_log(&self) -> CallLog {
        self.session.http().call_log().clone()
    }

    /// The current token (re-issued if close to expiry).
    pub async fn token(&self) -> Result<Arc<Token>, CloudError> {
        self.session.token().await
    }

    /// The catalog URL of `service_type` for the configured interface and region.
    pub async fn endpoint(&self, service_type: &str) -> Result<String, CloudError> {
        let token = self.session.token().await?;
        let config = self.session.config();
        token.catalog.endpoint(service_type, config.interface, config.region_name.as_deref())
    }

    /// The image service (Glance v2), discovered on first use.
    pub async fn glance(&self) -> Result<Glance, CloudError> {
        self.image
            .get_or_try_init(|| async {
                let url = self.endpoint("image").await?;
                Glance::discover(self.session.clone(), &url).await
            })
            .await
            .cloned()
    }

    /// The compute service (Nova v2.1), discovered and microversion-negotiated on first use.
    pub async fn nova(&self) -> Result<Nova, CloudError> {
        self.compute
            .get_or_try_init(|| async {
                let url = self.endpoint("compute").await?;
                Nova::discover(self.session.clone(), &url).await
            })
            .await
            .cloned()
    }

    /// Revokes the token; call at the end of a run.
    pub async fn revoke_token(&self) -> Result<(), CloudError> {
        self.session.revoke().await
    }
}
