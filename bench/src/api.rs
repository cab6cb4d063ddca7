//! API throughput and latency: a load generator in this process, N connections, against mockstack in a child process
//! and against the real services, for `GET /v2/images/{id}`, `GET /v2.1/servers/{id}`, `POST /v3/auth/tokens` and an
//! image create/delete cycle; plus an empty HTTP handler in the mockstack process as the floor every call sits on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use harness::cloud::config::{AuthMethod, CloudConfig, DomainRef, ProjectRef, Scope, UserRef};
use harness::cloud::glance::{ImageQuery, NewImage};
use harness::cloud::nova::{NewFlavor, NewServer};
use harness::cloud::{ClientOptions, Cloud};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::child::{MockChild, mock_admin_config};
use crate::hashing::generated_block;
use crate::real::RealCloud;
use crate::report::{Figure, Goal, Part, RatioKind};

/// How the API part runs.
#[derive(Debug, Clone)]
pub struct ApiPlan {
    /// How long each load run is measured, after `warmup`.
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub work_dir: PathBuf,
}

/// What one call of a load run does.
#[derive(Debug, Clone)]
pub enum LoadCall {
    Get(String),
    PostJson {
        url: String,
        body: Bytes,
    },
    /// `POST {images}` then `DELETE {images}/{id}`: one operation.
    CreateDeleteImage {
        images_url: String,
        body: Bytes,
    },
}

/// The outcome of one load run.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Operations that started inside the measured window and succeeded.
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: f64,
    /// Latency of each successful operation, sorted.
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window
    }

    /// The `q` quantile of the latencies, in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[rank - 1].as_secs_f64() * 1e3)
    }

    fn summary(&self) -> String {
        let q = |v: Option<f64>| v.map(crate::report::number).unwrap_or_else(|| "-".into());
        let mut text =
            format!("p50 {} ms, p99 {} ms, {} ops", q(self.quantile_ms(0.5)), q(self.quantile_ms(0.99)), self.ok);
        if self.errors > 0 {
            let first = self.first_error.as_deref().unwrap_or_default();
            let first: String = first.chars().take(60).collect();
            text.push_str(&format!(", {} errors, the first: {first}", self.errors));
        }
        text
    }
}

async fn once(client: &reqwest::Client, op: &LoadCall, headers: &HeaderMap) -> Result<(), String> {
    async fn check(response: reqwest::Result<reqwest::Response>) -> Result<Bytes, String> {
        let response = response.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))) }
    }
    match op {
        LoadCall::Get(url) => check(client.get(url).headers(headers.clone()).send().await).await.map(drop),
        LoadCall::PostJson { url, body } => check(
            client
                .post(url)
                .headers(headers.clone())
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await,
        )
        .await
        .map(drop),
        LoadCall::CreateDeleteImage { images_url, body } => {
            let created = check(
                client
                    .post(images_url)
                    .headers(headers.clone())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await,
            )
            .await?;
            let value: Value = serde_json::from_slice(&created).map_err(|e| e.to_string())?;
            let id = value["id"].as_str().ok_or("the created image has no id")?;
            check(client.delete(format!("{images_url}/{id}")).headers(headers.clone()).send().await).await.map(drop)
        }
    }
}

/// Runs `op` on `connections` concurrent connections for warmup + duration; counts what started in the window.
pub async fn generate(op: LoadCall, headers: HeaderMap, plan: &ApiPlan) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds");
    let started = Instant::now();
    let from = started + plan.warmup;
    let until = from + plan.duration;
    let shared = Arc::new((client, op, headers));
    let mut tasks = Vec::new();
    for _ in 0..plan.connections {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let (client, op, headers) = &*shared;
            let mut load = Load::default();
            loop {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let result = once(client, op, headers).await;
                if t < from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        load.ok += 1;
                        load.latencies.push(t.elapsed());
                    }
                    Err(e) => {
                        load.errors += 1;
                        load.first_error.get_or_insert(e);
                    }
                }
            }
            load
        }));
    }
    let mut total = Load { window: plan.duration.as_secs_f64(), ..Load::default() };
    for task in tasks {
        if let Ok(load) = task.await {
            total.ok += load.ok;
            total.errors += load.errors;
            if total.first_error.is_none() {
                total.first_error = load.first_error;
            }
            total.latencies.extend(load.latencies);
        }
    }
    total.latencies.sort();
    total
}

/// The body of `POST /v3/auth/tokens` for a password configuration (other methods are not load-tested).
fn password_auth_body(config: &CloudConfig) -> Option<Value> {
    let AuthMethod::Password { user, password, scope } = &config.auth else { return None };
    let domain = |d: &DomainRef| match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    };
    let mut user = match user {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
    };
    user["password"] = json!(password.expose());
    let mut auth = json!({ "identity": { "methods": ["password"], "password": { "user": user } } });
    match scope {
        Scope::Project(ProjectRef::Id(id)) => auth["scope"] = json!({ "project": { "id": id } }),
        Scope::Project(ProjectRef::Name { name, domain: d }) => {
            auth["scope"] = json!({ "project": { "name": name, "domain": domain(d) } })
        }
        Scope::Domain(d) => auth["scope"] = json!({ "domain": domain(d) }),
        Scope::System => auth["scope"] = json!({ "system": { "all": true } }),
        Scope::Unscoped => {}
    }
    Some(json!({ "auth": auth }))
}

/// The name of the images the create/delete cycle makes.
const CYCLE_IMAGE: &str = "bench-api-cycle";

/// The resources the load runs read, created through the harness client and deleted afterwards.
struct Fixtures {
    image_id: String,
    flavor_id: Option<String>,
    server_id: Option<String>,
}

/// The calls of one cloud, ready for the load generator.
struct Targets {
    token_headers: HeaderMap,
    compute_headers: HeaderMap,
    image_url: String,
    server_url: String,
    tokens_url: String,
    auth_body: Option<Bytes>,
    images_url: String,
}

async fn create_fixtures(
    cloud: &Cloud,
    scratch: &std::path::Path,
    fixtures: &mut Option<Fixtures>,
) -> anyhow::Result<()> {
    let glance = cloud.glance().await?;
    let nova = cloud.nova().await?;
    let suffix = &uuid_suffix();
    let data = scratch.join("bench-api-image.raw");
    std::fs::write(&data, generated_block(1 << 20))?;
    let image = glance
        .create_image(&NewImage {
            name: format!("bench-api-{suffix}"),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            ..NewImage::default()
        })
        .await?;
    let f = fixtures.insert(Fixtures { image_id: image.id.clone(), flavor_id: None, server_id: None });
    glance.upload_file(&image.id, &data, None).await?;
    let flavor = nova
        .create_flavor(&NewFlavor {
            name: format!("bench-api-{suffix}"),
            ram: 64,
            vcpus: 1,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            is_public: true,
            id: None,
        })
        .await?;
    f.flavor_id = Some(flavor.id.clone());
    let server = nova
        .create_server(&NewServer {
            name: format!("bench-api-{suffix}"),
            image_ref: image.id.clone(),
            flavor_ref: flavor.id.clone(),
            metadata: BTreeMap::new(),
            no_network: true,
        })
        .await?;
    f.server_id = Some(server.id.clone());
    let started = Instant::now();
    loop {
        let now = nova.get_server(&server.id).await?;
        match now.status.as_str() {
            "ACTIVE" => break,
            "ERROR" => anyhow::bail!(
                "the benchmark's server went to ERROR: {}",
                now.fault.map(|f| f.message).unwrap_or_default()
            ),
            _ if started.elapsed() > Duration::from_secs(180) => {
                anyhow::bail!("the benchmark's server is still {} after 3 minutes", now.status)
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    Ok(())
}

async fn delete_fixtures(cloud: &Cloud, fixtures: Option<Fixtures>) {
    let Some(f) = fixtures else { return };
    if let (Some(id), Ok(nova)) = (&f.server_id, cloud.nova().await) {
        let _ = nova.delete_server(id).await;
        let _ = nova.wait_server_deleted(id, Duration::from_secs(120), Duration::from_millis(500)).await;
    }
    if let (Some(id), Ok(nova)) = (&f.flavor_id, cloud.nova().await) {
        let _ = nova.delete_flavor(id).await;
    }
    if let Ok(glance) = cloud.glance().await {
        let _ = glance.delete_image(&f.image_id).await;
        // A cycle whose delete failed (real Glance on sqlite answers 500 "database is locked" under concurrent
        // writes) leaves its image behind.
        let query = ImageQuery { name: Some(CYCLE_IMAGE.into()), ..ImageQuery::default() };
        for image in glance.list_images(&query).await.unwrap_or_default() {
            let _ = glance.delete_image(&image.id).await;
        }
    }
}

fn uuid_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn targets(cloud: &Cloud, fixtures: &Fixtures) -> anyhow::Result<Targets> {
    let glance = cloud.glance().await?;
    let nova = cloud.nova().await?;
    let token = cloud.token().await?;
    let mut token_headers = HeaderMap::new();
    let mut value = HeaderValue::from_str(token.value.expose()).context("the token is not a header value")?;
    value.set_sensitive(true);
    token_headers.insert(HeaderName::from_static("x-auth-token"), value);
    token_headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
    let mut compute_headers = token_headers.clone();
    if let Some(version) = nova.microversion() {
        compute_headers.insert(
            HeaderName::from_static("openstack-api-version"),
            HeaderValue::from_str(&format!("compute {version}"))?,
        );
    }
    let compute = cloud.endpoint("compute").await?;
    let compute = harness::cloud::catalog::compute_version_url(&compute)
        .unwrap_or_else(|| format!("{}/v2.1", compute.trim_end_matches('/')));
    let server_id = fixtures.server_id.clone().context("no server was created")?;
    let auth_url = harness::cloud::auth::identity_v3_url(&cloud.config().auth_url);
    Ok(Targets {
        image_url: format!("{}/v2/images/{}", glance.root_url(), fixtures.image_id),
        server_url: format!("{compute}/servers/{server_id}"),
        tokens_url: format!("{auth_url}/auth/tokens"),
        auth_body: password_auth_body(cloud.config()).map(|b| Bytes::from(b.to_string())),
        images_url: format!("{}/v2/images", glance.root_url()),
        token_headers,
        compute_headers,
    })
}

/// The four calls, by name, each with its load (or why it was not measured).
type Loads = Vec<(&'static str, Result<Load, String>)>;

const CALLS: [&str; 4] =
    ["GET /v2/images/{id}", "GET /v2.1/servers/{id}", "POST /v3/auth/tokens", "image create + delete cycle"];

async fn load_all(cloud: &Cloud, scratch: &std::path::Path, plan: &ApiPlan, who: &str) -> anyhow::Result<Loads> {
    let mut fixtures = None;
    let created = create_fixtures(cloud, scratch, &mut fixtures).await;
    let result = async {
        created?;
        let t = targets(cloud, fixtures.as_ref().expect("created above")).await?;
        let mut loads: Loads = Vec::new();
        let cycle_body =
            Bytes::from(json!({"name": CYCLE_IMAGE, "disk_format": "raw", "container_format": "bare"}).to_string());
        let ops: [(&str, Option<LoadCall>, &HeaderMap); 4] = [
            (CALLS[0], Some(LoadCall::Get(t.image_url.clone())), &t.token_headers),
            (CALLS[1], Some(LoadCall::Get(t.server_url.clone())), &t.compute_headers),
            (
                CALLS[2],
                t.auth_body.clone().map(|body| LoadCall::PostJson { url: t.tokens_url.clone(), body }),
                &HeaderMap::new(),
            ),
            (
                CALLS[3],
                Some(LoadCall::CreateDeleteImage { images_url: t.images_url.clone(), body: cycle_body }),
                &t.token_headers,
            ),
        ];
        for (name, op, headers) in ops {
            let Some(op) = op else {
                loads.push((name, Err("not measured: the cloud's auth is not a password".into())));
                continue;
            };
            eprintln!("bench api: {name} on {who} ...");
            let load = generate(op, headers.clone(), plan).await;
            if load.ok == 0 {
                anyhow::bail!(
                    "{name} on {who}: no call succeeded ({})",
                    load.first_error.unwrap_or_else(|| "no call finished".into())
                );
            }
            loads.push((name, Ok(load)));
        }
        Ok(loads)
    }
    .await;
    delete_fixtures(cloud, fixtures).await;
    result
}

/// Runs the part and returns its figures.
pub async fn run(plan: &ApiPlan, real: &RealCloud) -> anyhow::Result<Vec<Figure>> {
    let scratch = tempfile::Builder::new().prefix("isoharness-bench-api-").tempdir_in(&plan.work_dir)?;
    let child = MockChild::spawn_with(&scratch.path().join("mockstack"), "scaled:20")?;
    let floor = {
        eprintln!("bench api: empty handler ...");
        generate(LoadCall::Get(format!("{}/", child.ready.floor_url)), HeaderMap::new(), plan).await
    };
    let mock_cloud = Cloud::connect(mock_admin_config(&child.ready.url), ClientOptions::default()).await?;
    let mock = load_all(&mock_cloud, scratch.path(), plan, "mockstack").await?;
    drop(mock_cloud);
    child.stop()?;
    let real_loads: Result<Loads, String> = match real.config() {
        Ok(config) => {
            let cloud = Cloud::connect(config.clone(), ClientOptions::default()).await?;
            let loads = load_all(&cloud, scratch.path(), plan, "the real cloud").await;
            let _ = cloud.revoke_token().await;
            Ok(loads?)
        }
        Err(why) => Err(why),
    };

    let p = Part::Api;
    let mut figures = vec![
        Figure::new(p, format!("empty HTTP handler, {} connections", plan.connections), floor.rate(), "req/s")
            .note(format!("axum in the mockstack process; {}", floor.summary())),
    ];
    let real_names = ["real Glance", "real Nova", "real Keystone", "real Glance"];
    let targets = [Some(50.0), Some(200.0), None, None];
    for (i, (name, mock_load)) in mock.iter().enumerate() {
        let real_load: Result<&Load, String> = match &real_loads {
            Ok(loads) => loads[i].1.as_ref().map_err(Clone::clone),
            Err(why) => Err(why.clone()),
        };
        let real_name = real_names[i];
        let unit = if i == 3 { "cycles/s" } else { "req/s" };
        let mock_rate = mock_load.as_ref().map(Load::rate).map_err(Clone::clone);
        let real_rate = real_load.clone().map(Load::rate);
        let mut mine = Figure::maybe(p, format!("{name}, mockstack"), mock_rate.clone(), unit).against(
            "empty HTTP handler",
            Some(floor.rate()),
            "req/s",
            RatioKind::Fraction,
        );
        if let Ok(load) = mock_load {
            mine = mine.note(load.summary());
        }
        figures.push(mine);
        let mut theirs = Figure::maybe(p, format!("{name}, {real_name}"), real_rate.clone(), unit).against(
            "empty HTTP handler",
            Some(floor.rate()),
            "req/s",
            RatioKind::Fraction,
        );
        if let Ok(load) = &real_load {
            theirs = theirs.note(load.summary());
        }
        figures.push(theirs);
        let mut ratio = Figure::maybe(p, format!("{name}: mockstack against {real_name}"), mock_rate, unit).against(
            real_name,
            real_rate.as_ref().ok().copied(),
            unit,
            RatioKind::Times,
        );
        if let Some(t) = targets[i] {
            ratio = ratio.target(Goal::RatioAtLeast(t));
        }
        figures.push(ratio);
        let p99 = |l: &Result<Load, String>| l.as_ref().ok().and_then(|l| l.quantile_ms(0.99));
        let mock_p99 = p99(mock_load).ok_or_else(|| "not measured".to_string());
        let real_p99 = real_load.as_ref().ok().and_then(|l| l.quantile_ms(0.99));
        figures.push(Figure::maybe(p, format!("{name}: p99 latency, mockstack"), mock_p99, "ms").against(
            format!("{real_name} p99"),
            real_p99,
            "ms",
            RatioKind::TimesLess,
        ));
    }
    Ok(figures)
}
