//! The local real cloud (`cargo xtask realstack up`), when `ISOHARNESS_REALSTACK_CLOUDS` names its clouds.yaml: the
//! real-service columns are measured against it, and say "not measured: no real cloud" otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use harness::cloud::config::{CloudConfig, ConfigEnv, ConfigRequest, DiskFiles, resolve};

/// The variable `cargo xtask test` and `cargo xtask bench` set when the local real cloud is up.
pub const CLOUDS_VAR: &str = "ISOHARNESS_REALSTACK_CLOUDS";
/// The cloud's name in that clouds.yaml.
pub const CLOUD_NAME: &str = "realstack";
/// What a real-service figure says when there is no real cloud.
pub const NO_REAL_CLOUD: &str = "not measured: no real cloud";

/// The real cloud of this run, or why there is none.
#[derive(Debug, Clone)]
pub enum RealCloud {
    Available { config: Box<CloudConfig>, clouds_yaml: PathBuf },
    Absent(String),
}

impl RealCloud {
    /// From `--real-clouds FILE` or the environment variable.
    pub fn from_file(clouds_yaml: Option<&Path>) -> anyhow::Result<RealCloud> {
        let Some(path) = clouds_yaml else { return Ok(RealCloud::Absent(NO_REAL_CLOUD.into())) };
        let env = ConfigEnv {
            vars: BTreeMap::from([("OS_CLIENT_CONFIG_FILE".to_string(), path.display().to_string())]),
            current_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            home_dir: None,
        };
        let request = ConfigRequest { cloud: Some(CLOUD_NAME.into()), region_name: None };
        let config = resolve(&request, &env, &DiskFiles)
            .with_context(|| format!("cannot read the real cloud `{CLOUD_NAME}` from {}", path.display()))?;
        Ok(RealCloud::Available { config: Box::new(config), clouds_yaml: path.to_path_buf() })
    }

    pub fn config(&self) -> Result<&CloudConfig, String> {
        match self {
            RealCloud::Available { config, .. } => Ok(config),
            RealCloud::Absent(why) => Err(why.clone()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RealCloud::Available { config, clouds_yaml } => {
                format!("real cloud `{}` at {} (from {})", config.name, config.auth_url, clouds_yaml.display())
            }
            RealCloud::Absent(why) => why.clone(),
        }
    }
}
