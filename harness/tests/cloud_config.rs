//! clouds.yaml / secure.yaml / OS_* resolution, as a table of (environment, files) → configuration or error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::cloud::config::{
    AuthMethod, ConfigEnv, ConfigOrigin, ConfigRequest, CredentialRef, DomainRef, Interface, ProjectRef, Scope,
    TlsVerify, UserRef, resolve,
};
use harness::cloud::{CloudConfig, ConfigError, Secret};

const CWD: &str = "/work/project";
const HOME: &str = "/home/op";

struct Case<'a> {
    env: &'a [(&'a str, &'a str)],
    files: &'a [(&'a str, &'a str)],
    cloud: Option<&'a str>,
}

fn run(case: &Case) -> Result<CloudConfig, ConfigError> {
    let env = ConfigEnv {
        vars: case.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        current_dir: PathBuf::from(CWD),
        home_dir: Some(PathBuf::from(HOME)),
    };
    let files: BTreeMap<PathBuf, String> = case.files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
    let reader = move |path: &Path| files.get(path).cloned();
    let request = ConfigRequest { cloud: case.cloud.map(String::from), region_name: None };
    resolve(&request, &env, &reader)
}

fn check_ok(case: Case, expected: impl FnOnce(&CloudConfig)) {
    match run(&case) {
        Ok(config) => expected(&config),
        Err(e) => panic!("expected a configuration, got error: {e}"),
    }
}

fn check_err(case: Case, expected_fragments: &[&str]) {
    match run(&case) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => {
            let message = e.to_string();
            for fragment in expected_fragments {
                assert!(message.contains(fragment), "error {message:?} does not mention {fragment:?}");
            }
        }
    }
}

const ENV_PASSWORD: &[(&str, &str)] = &[
    ("OS_AUTH_URL", "https://keystone.example.com:5000/v3"),
    ("OS_USERNAME", "alice"),
    ("OS_PASSWORD", "s3cret"),
    ("OS_PROJECT_NAME", "alpha"),
    ("OS_USER_DOMAIN_NAME", "Default"),
    ("OS_PROJECT_DOMAIN_ID", "default"),
    ("OS_REGION_NAME", "RegionTwo"),
    ("OS_INTERFACE", "internal"),
    ("OS_CACERT", "/etc/ssl/cloud-ca.pem"),
    ("PATH", "/usr/bin"),
];

#[test]
fn environment_only() {
    check_ok(Case { env: ENV_PASSWORD, files: &[], cloud: None }, |c| {
        assert_eq!(c.name, "envvars");
        assert_eq!(c.origin, ConfigOrigin::Environment);
        assert_eq!(c.auth_url, "https://keystone.example.com:5000/v3");
        assert_eq!(
            c.auth,
            AuthMethod::Password {
                user: UserRef::Name { name: "alice".into(), domain: DomainRef::Name("Default".into()) },
                password: Secret::new("s3cret"),
                scope: Scope::Project(ProjectRef::Name {
                    name: "alpha".into(),
                    domain: DomainRef::Id("default".into())
                }),
            }
        );
        assert_eq!(c.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, Interface::Internal);
        assert_eq!(c.tls, TlsVerify::CaBundle("/etc/ssl/cloud-ca.pem".into()));
        assert!(!format!("{c:?}").contains("s3cret"), "the password leaked into Debug");
    });
}

#[test]
fn environment_application_credential_and_insecure() {
    let env = &[
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_AUTH_URL", "http://127.0.0.1/identity"),
        ("OS_APPLICATION_CREDENTIAL_ID", "ac-1"),
        ("OS_APPLICATION_CREDENTIAL_SECRET", "topsecret"),
        ("OS_INSECURE", "True"),
    ];
    check_ok(Case { env, files: &[], cloud: None }, |c| {
        assert_eq!(
            c.auth,
            AuthMethod::ApplicationCredential {
                credential: CredentialRef::Id("ac-1".into()),
                secret: Secret::new("topsecret")
            }
        );
        assert_eq!(c.tls, TlsVerify::Insecure);
        assert_eq!(c.interface, Interface::Public);
        assert!(!format!("{c:?}").contains("topsecret"));
    });
}

const CLOUDS_YAML: &str = r#"
clouds:
  mycloud:
    auth:
      auth_url: https://cloud.example.org/identity
      username: bob
      project-id: 1234
      user_domain_id: default
    region_name: RegionOne
    interface: publicURL
    verify: false
    api_timeout: 30
  other:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://other.example.org:5000
      application_credential_name: builder
      username: carol
      application_credential_secret: xyz
    regions:
      - north
      - name: south
        values:
          interface: internal
"#;

const SECURE_YAML: &str = r#"
clouds:
  mycloud:
    auth:
      password: from-secure
"#;

#[test]
fn cloud_from_file_merged_with_secure_yaml() {
    let files = &[("/home/op/.config/openstack/clouds.yaml", CLOUDS_YAML), ("/etc/openstack/secure.yaml", SECURE_YAML)];
    check_ok(Case { env: &[("OS_CLOUD", "mycloud")], files, cloud: None }, |c| {
        assert_eq!(c.name, "mycloud");
        assert_eq!(
            c.origin,
            ConfigOrigin::Files {
                clouds: Some("/home/op/.config/openstack/clouds.yaml".into()),
                secure: Some("/etc/openstack/secure.yaml".into())
            }
        );
        assert_eq!(
            c.auth,
            AuthMethod::Password {
                user: UserRef::Name { name: "bob".into(), domain: DomainRef::Id("default".into()) },
                password: Secret::new("from-secure"),
                scope: Scope::Project(ProjectRef::Id("1234".into())),
            }
        );
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        assert_eq!(c.interface, Interface::Public);
        assert_eq!(c.tls, TlsVerify::Insecure);
        assert_eq!(c.api_timeout, Some(Duration::from_secs(30)));
    });
}

#[test]
fn os_cloud_flag_beats_environment_and_regions_list_gives_first_region() {
    let files = &[("/work/project/clouds.yaml", CLOUDS_YAML)];
    check_ok(Case { env: &[("OS_CLOUD", "mycloud")], files, cloud: Some("other") }, |c| {
        assert_eq!(c.name, "other");
        assert_eq!(c.region_name.as_deref(), Some("north"));
        assert_eq!(
            c.auth,
            AuthMethod::ApplicationCredential {
                credential: CredentialRef::Name {
                    name: "builder".into(),
                    user: UserRef::Name { name: "carol".into(), domain: DomainRef::Id("default".into()) }
                },
                secret: Secret::new("xyz"),
            }
        );
    });
    check_err(
        Case { env: &[("OS_REGION_NAME", "west")], files, cloud: Some("other") },
        &["clouds.other.regions", "\"west\"", "north, south"],
    );
}

#[test]
fn environment_values_override_the_named_file_cloud_like_the_openstack_cli() {
    let files = &[("/work/project/clouds.yaml", CLOUDS_YAML)];
    check_ok(Case { env: &[("OS_CLOUD", "mycloud"), ("OS_PASSWORD", "from-env")], files, cloud: None }, |c| {
        assert!(matches!(&c.auth, AuthMethod::Password { password, .. } if password.expose() == "from-env"));
    });
}

#[test]
fn client_config_file_variable_comes_first_and_json_is_read() {
    let json = r#"{"clouds": {"j": {"auth": {"auth_url": "http://k/v3", "user_id": "u1", "password": "p", "domain_id": "d1"}}}}"#;
    let files = &[("/work/project/clouds.yaml", CLOUDS_YAML), ("/srv/cfg/clouds.json", json)];
    check_ok(Case { env: &[("OS_CLIENT_CONFIG_FILE", "/srv/cfg/clouds.json")], files, cloud: None }, |c| {
        assert_eq!(c.name, "j");
        assert_eq!(
            c.auth,
            AuthMethod::Password {
                user: UserRef::Id("u1".into()),
                password: Secret::new("p"),
                scope: Scope::Domain(DomainRef::Id("d1".into())),
            }
        );
    });
}

#[test]
fn missing_key_names_file_and_key() {
    let yaml = "clouds:\n  mycloud:\n    auth:\n      username: bob\n      password: x\n";
    check_err(
        Case { env: &[], files: &[("/work/project/clouds.yaml", yaml)], cloud: Some("mycloud") },
        &["/work/project/clouds.yaml", "clouds.mycloud.auth.auth_url is missing"],
    );
    let yaml = "clouds:\n  mycloud:\n    auth:\n      auth_url: http://k:5000\n      username: bob\n";
    check_err(
        Case { env: &[], files: &[("/work/project/clouds.yaml", yaml)], cloud: Some("mycloud") },
        &["clouds.mycloud.auth.password is missing"],
    );
    check_err(
        Case { env: &[("OS_AUTH_URL", "http://k/v3"), ("OS_USERNAME", "u")], files: &[], cloud: None },
        &["OS_* environment variables", "OS_PASSWORD is missing"],
    );
}

#[test]
fn bad_yaml_reports_line_and_column() {
    let yaml = "clouds:\n  mycloud:\n    auth:\n      auth_url: [unclosed\n    region_name: x\n";
    match run(&Case { env: &[], files: &[("/home/op/.config/openstack/clouds.yaml", yaml)], cloud: Some("mycloud") }) {
        Err(ConfigError::Parse { path, location, .. }) => {
            assert_eq!(path, PathBuf::from("/home/op/.config/openstack/clouds.yaml"));
            let (line, _column) = location.expect("the YAML parser gives a position");
            assert!((4..=5).contains(&line), "line {line}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let wrong_type = "clouds:\n  mycloud:\n    auth:\n      - auth_url\n";
    check_err(
        Case { env: &[], files: &[("/work/project/clouds.yaml", wrong_type)], cloud: None },
        &["/work/project/clouds.yaml:4:", "clouds.mycloud.auth"],
    );
}

#[test]
fn unknown_cloud_and_unsupported_values() {
    let files = &[("/work/project/clouds.yaml", CLOUDS_YAML)];
    check_err(Case { env: &[], files, cloud: Some("nope") }, &["\"nope\"", "mycloud, other"]);
    check_err(Case { env: &[], files, cloud: None }, &["several clouds", "--os-cloud"]);
    check_err(Case { env: &[], files: &[], cloud: None }, &["no cloud configuration", "/etc/openstack/clouds.yaml"]);
    let env = &[("OS_AUTH_URL", "http://k/v3"), ("OS_AUTH_TYPE", "v3oidcpassword")];
    check_err(Case { env, files: &[], cloud: None }, &["OS_AUTH_TYPE", "v3oidcpassword", "supported auth types"]);
    let env = &[("OS_AUTH_URL", "http://k/v3"), ("OS_IDENTITY_API_VERSION", "2"), ("OS_USERNAME", "u")];
    check_err(Case { env, files: &[], cloud: None }, &["OS_IDENTITY_API_VERSION", "v3"]);
    let yaml = "clouds:\n  c:\n    auth:\n      auth_url: http://k\n      username: u\n      password: p\n    interface: sideways\n";
    check_err(
        Case { env: &[], files: &[("/work/project/clouds.yaml", yaml)], cloud: None },
        &["clouds.c.interface", "sideways"],
    );
}

#[test]
fn selectors_alone_make_no_environment_cloud() {
    let files = &[(
        "/work/project/clouds.yaml",
        SECURE_YAML
            .replace("password: from-secure", "auth_url: http://k/v3\n      username: u\n      password: p")
            .leak() as &str,
    )];
    check_ok(Case { env: &[("OS_REGION_NAME", "R"), ("OS_TEST_TIMEOUT", "60")], files, cloud: None }, |c| {
        assert_eq!(c.name, "mycloud");
        assert_eq!(c.region_name.as_deref(), Some("R"));
    });
}

/// serde_json counts columns in bytes; the error names the character column, as the YAML errors and every other
/// located error of the harness do (found by fuzzing: the column pointed past the end of the line).
#[test]
fn json_errors_count_columns_in_characters() {
    let json = "{\"clouds\": {\"é\": {\"auth_type\": \"x\" \"y\"}}}";
    match run(&Case { env: &[], files: &[("/work/project/clouds.json", json)], cloud: None }) {
        Err(ConfigError::Parse { location, .. }) => assert_eq!(location, Some((1, 36)), "at the second string"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    let json = "{\"clouds\":\n {\"ü\": ";
    match run(&Case { env: &[], files: &[("/work/project/clouds.json", json)], cloud: None }) {
        Err(ConfigError::Parse { location, .. }) => assert_eq!(location, Some((2, 7)), "at the end of the input"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn yaml_errors_at_the_end_of_the_input_point_at_its_last_line() {
    // The YAML parser places the end of an input without a final newline on the line after the last.
    let yaml = "clouds:\n  fuzz:\n    auth:\n      auth_url: https://keystone.example:5000/v3\n      u";
    match run(&Case { env: &[], files: &[("/work/project/clouds.yaml", yaml)], cloud: None }) {
        Err(ConfigError::Parse { location, .. }) => assert_eq!(location, Some((5, 8)), "the end of the last line"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn yaml_errors_after_a_lone_carriage_return_are_located_in_the_lines_an_editor_shows() {
    // YAML breaks the line at the lone `\r`; an editor does not, so the error after it is on the editor's line 2.
    let yaml = "clouds:\n  fuzz:\n    auth:\n      auth_url: https://keystone.example:5000/v3\n      username: fal\rOMAIN_NAME\n      password: secret\n";
    match run(&Case { env: &[], files: &[("/work/project/clouds.yaml", yaml)], cloud: None }) {
        Err(ConfigError::Parse { location: Some((line, column)), .. }) => {
            // YAML says line 7, column 15: its line 7 is the editor's line 6, `      password: secret`.
            assert_eq!((line, column), (6, 15));
        }
        other => panic!("expected a located parse error, got {other:?}"),
    }
}
