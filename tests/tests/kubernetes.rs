//! The Kubernetes manifests in deploy/kubernetes/base/, without a cluster:
//! rendered as kustomize would (tests/kubernetes/manifests.py, which
//! refuses kustomize features it does not render), every document valid
//! against the Kubernetes schemas of the oldest and newest versions the
//! manifests are meant for (kubernetes-validate, pinned in
//! tests/python/requirements.txt) and the prometheus-operator CRD schemas
//! vendored in tests/kubernetes/schemas/; then what no schema knows: that
//! the selectors reach the pods, the probes and ports are pgvigil's, the
//! drain fits in the grace period, secrets stay out of the ConfigMap, the
//! PrometheusRule is the rules file, the autoscaler's metric exists, the
//! pools of every replica fit in PostgreSQL's max_connections, and the
//! ConfigMap's pgvigil.toml runs in the real binary.
//!
//! Needs the Python of scripts/test.sh (`PGVIGIL_PYTHON`, with
//! kubernetes-validate and PyYAML) and promtool.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test kubernetes`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::repo::{promtool, repo_root};
use pgvigil_integration::serde_json::{self, json, Value};
use pgvigil_integration::vigil::run_cli;
use pgvigil_integration::{shared_cluster, timed, wait_until, Pgvigil};

/// The oldest Kubernetes minor the manifests support (nothing in them is
/// newer) and the newest the pinned kubernetes-validate knows: a field
/// renamed or removed in between fails one of the two.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Every kind the base must contain (issue 15, section 4).
const KINDS: [&str; 8] = [
    "Deployment",
    "Service",
    "ConfigMap",
    "Secret",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "ServiceMonitor",
    "PrometheusRule",
];

fn base_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes/base")
}

/// `manifests.py <args>`: Ok(the documents) or Err(its complaint).
fn manifests(args: &[&str]) -> Result<std::result::Result<Vec<Value>, String>> {
    let script = repo_root().join("tests/kubernetes/manifests.py");
    let out = Command::new(pgvigil_integration::python::interpreter())
        .arg(&script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .context("running tests/kubernetes/manifests.py")?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("ModuleNotFoundError") {
        bail!(
            "the Python for the tests lacks a module ({}): run `{}` (scripts/test.sh does, into \
             target/python-venv, and sets PGVIGIL_PYTHON)",
            stderr.trim(),
            pgvigil_integration::python::INSTALL_HINT
        );
    }
    if !out.status.success() {
        return Ok(Err(stderr));
    }
    Ok(Ok(
        serde_json::from_slice(&out.stdout).context("manifests.py output")?
    ))
}

fn validate(dir: &Path) -> Result<std::result::Result<Vec<Value>, String>> {
    let dir = dir.to_str().context("non-UTF-8 path")?;
    let mut args = vec!["validate", dir];
    args.extend(KUBERNETES_VERSIONS);
    manifests(&args)
}

/// The base, rendered and validated once for all the tests of this file
/// (each validation loads the schemas of every Kubernetes version).
fn documents() -> Result<Vec<Value>> {
    static BASE: OnceLock<std::result::Result<Vec<Value>, String>> = OnceLock::new();
    BASE.get_or_init(|| match validate(&base_dir()) {
        Ok(Ok(docs)) => Ok(docs),
        Ok(Err(why)) => Err(format!("deploy/kubernetes/base does not validate:\n{why}")),
        Err(e) => Err(format!("{e:#}")),
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn the<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    ensure!(
        found.len() == 1,
        "{} {kind} documents, expected one",
        found.len()
    );
    Ok(found[0])
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// `selector` (a label map) picks objects labelled `labels`.
fn selects(selector: &Value, labels_of: &Value) -> bool {
    let selector = labels(selector);
    let have = labels(labels_of);
    !selector.is_empty() && selector.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The Deployment's pod spec.
fn pod(docs: &[Value]) -> Result<&Value> {
    Ok(&the(docs, "Deployment")?["spec"]["template"]["spec"])
}

fn container(docs: &[Value]) -> Result<&Value> {
    let containers = pod(docs)?["containers"].as_array().context("containers")?;
    ensure!(containers.len() == 1, "one container expected");
    Ok(&containers[0])
}

fn container_port(container: &Value, name: &str) -> Result<u64> {
    container["ports"]
        .as_array()
        .context("container ports")?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .with_context(|| format!("no container port named {name}"))
}

/// The ConfigMap's pgvigil.toml, as text and parsed.
fn pgvigil_toml(docs: &[Value]) -> Result<(String, toml::Table)> {
    let text = the(docs, "ConfigMap")?["data"]["pgvigil.toml"]
        .as_str()
        .context("the ConfigMap has no pgvigil.toml")?
        .to_string();
    let table = text.parse::<toml::Table>().context("pgvigil.toml")?;
    Ok((text, table))
}

fn port_of(addr: &str) -> Result<u64> {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in {addr}"))
}

/// Where a volume of the pod is mounted in the container.
fn mount_path(docs: &[Value], volume_of: impl Fn(&Value) -> bool) -> Result<String> {
    let volume = pod(docs)?["volumes"]
        .as_array()
        .context("volumes")?
        .iter()
        .find(|v| volume_of(v))
        .context("no such volume")?;
    let mount = container(docs)?["volumeMounts"]
        .as_array()
        .context("volumeMounts")?
        .iter()
        .find(|m| m["name"] == volume["name"])
        .context("volume not mounted")?;
    Ok(mount["mountPath"]
        .as_str()
        .context("mountPath")?
        .to_string())
}

#[test]
fn manifests_validate_against_kubernetes_and_prometheus_operator_schemas() -> Result<()> {
    let docs = documents()?;
    for kind in KINDS {
        the(&docs, kind)?;
    }
    Ok(())
}

/// Copies the base to a temporary folder with `file`'s text changed by
/// `edit`, which must change it.
fn broken_base(file: &str, edit: impl Fn(&str) -> String) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(base_dir())? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.path().join(entry.file_name()))?;
    }
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path)?;
    let changed = edit(&text);
    ensure!(changed != text, "the edit of {file} changed nothing");
    std::fs::write(&path, changed)?;
    Ok(dir)
}

/// The validation bites: a misspelt field, a value of the wrong type, in a
/// built-in kind and in each prometheus-operator kind, and a kustomize
/// feature the renderer does not render, each fail it, naming the cause.
#[test]
fn validation_rejects_misspelt_fields_wrong_types_and_unrendered_kustomize_features() -> Result<()>
{
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "deployment.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "readinesProbe",
        ),
        (
            "horizontalpodautoscaler.yaml",
            "maxReplicas: 4",
            "maxReplicas: four",
            "maxReplicas",
        ),
        (
            "servicemonitor.yaml",
            "scrapeTimeout: 10s",
            "scrapeTimeot: 10s",
            "scrapeTimeot",
        ),
        (
            "prometheusrule.yaml",
            "- alert: PgvigilDown",
            "- alert: [PgvigilDown]",
            "alert",
        ),
        (
            "kustomization.yaml",
            "resources:",
            "commonLabels:\n  team: db\nresources:",
            "commonLabels",
        ),
    ];
    for (file, from, to, named) in cases {
        let dir = broken_base(file, |t| t.replacen(from, to, 1))?;
        match validate(dir.path())? {
            Ok(_) => bail!("{file} with `{to}` passed validation"),
            Err(why) => ensure!(
                why.contains(named),
                "{file} with `{to}` failed without naming {named}: {why}"
            ),
        }
    }
    Ok(())
}

#[test]
fn selectors_reach_the_pods_and_the_autoscaler_owns_the_deployment() -> Result<()> {
    let docs = documents()?;
    let deployment = the(&docs, "Deployment")?;
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    ensure!(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its pod template"
    );
    let service = the(&docs, "Service")?;
    ensure!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service does not select the pods"
    );
    ensure!(
        selects(
            &the(&docs, "PodDisruptionBudget")?["spec"]["selector"]["matchLabels"],
            pod_labels
        ),
        "the PodDisruptionBudget does not select the pods"
    );
    let monitor = the(&docs, "ServiceMonitor")?;
    ensure!(
        selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "the ServiceMonitor does not select the Service"
    );
    let container = container(&docs)?;
    let service_ports = service["spec"]["ports"].as_array().context("ports")?;
    for port in service_ports {
        let target = port["targetPort"].as_str().context("named targetPort")?;
        container_port(container, target)?;
    }
    for endpoint in monitor["spec"]["endpoints"]
        .as_array()
        .context("endpoints")?
    {
        ensure!(
            service_ports.iter().any(|p| p["name"] == endpoint["port"]),
            "the ServiceMonitor scrapes port {}, which the Service does not name",
            endpoint["port"]
        );
        ensure!(
            endpoint["path"] == "/metrics",
            "scrape path {}",
            endpoint["path"]
        );
    }
    // The operator names the job after the Service; PgvigilDown watches
    // up{job="pgvigil"}.
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/pgvigil-rules.yml"))?;
    ensure!(rules.contains("up{job=\"pgvigil\"}"));
    ensure!(
        service["metadata"]["name"] == "pgvigil" && monitor["spec"].get("jobLabel").is_none(),
        "the scrape job would not be called pgvigil, which the alert rules expect"
    );

    let spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .context("no topologySpreadConstraints")?;
    ensure!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                && c["whenUnsatisfiable"] == "DoNotSchedule"
                && selects(&c["labelSelector"]["matchLabels"], pod_labels)),
        "replicas are not kept on different nodes"
    );

    let hpa = the(&docs, "HorizontalPodAutoscaler")?;
    let target = &hpa["spec"]["scaleTargetRef"];
    ensure!(
        target["kind"] == "Deployment"
            && target["name"] == deployment["metadata"]["name"]
            && target["apiVersion"] == deployment["apiVersion"],
        "the autoscaler scales {target}"
    );
    let replicas = deployment["spec"]["replicas"]
        .as_u64()
        .context("replicas")?;
    ensure!(replicas >= 2, "{replicas} replica(s)");
    ensure!(
        hpa["spec"]["minReplicas"].as_u64() == Some(replicas),
        "minReplicas differs from the Deployment's replicas"
    );
    ensure!(
        the(&docs, "PodDisruptionBudget")?["spec"]["maxUnavailable"].as_u64() == Some(1),
        "the PodDisruptionBudget lets more than one replica go at once"
    );
    Ok(())
}

/// Probes name pgvigil's routes on the admin port, the container ports are
/// the config's listen ports, the config is the file the command reads,
/// and preStop sleep + shutdown_timeout < terminationGracePeriodSeconds.
#[test]
fn probes_ports_and_drain_fit_the_config() -> Result<()> {
    let docs = documents()?;
    let container = container(&docs)?;
    let (_, config) = pgvigil_toml(&docs)?;
    let section = config["pgvigil"].as_table().context("[pgvigil]")?;
    let listen = section["listen"].as_str().context("listen")?;
    let admin_listen = section["admin_listen"].as_str().context("admin_listen")?;
    ensure!(
        container_port(container, "postgres")? == port_of(listen)?,
        "container port postgres is not listen ({listen})"
    );
    let admin_port = container_port(container, "admin")?;
    ensure!(
        admin_port == port_of(admin_listen)?,
        "container port admin is not admin_listen ({admin_listen})"
    );
    ensure!(
        listen.starts_with("0.0.0.0:") && admin_listen.starts_with("0.0.0.0:"),
        "a loopback listener is unreachable from the kubelet and the Service"
    );

    // The image's default arguments (--listen, --admin-listen) would
    // override the file: a command without args drops them.
    let command: Vec<&str> = container["command"]
        .as_array()
        .context("no command")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        container.get("args").is_none(),
        "args override the ConfigMap"
    );
    let config_mount = mount_path(&docs, |v| v["configMap"]["name"] == "pgvigil-config")?;
    ensure!(
        command
            == [
                "pgvigil",
                "--config",
                &format!("{config_mount}/pgvigil.toml")
            ],
        "command {command:?} does not read the ConfigMap's pgvigil.toml"
    );

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        ensure!(get["path"] == path, "{probe} asks {}", get["path"]);
        ensure!(
            get["port"] == "admin" || get["port"].as_u64() == Some(admin_port),
            "{probe} probes port {}",
            get["port"]
        );
    }
    // /readyz may take a login attempt (bounded by 5 s in pgvigil-admin).
    ensure!(container["readinessProbe"]["timeoutSeconds"].as_u64() > Some(5));
    let admin_src = std::fs::read_to_string(repo_root().join("crates/pgvigil-admin/src/lib.rs"))?;
    for route in ["\"/healthz\"", "\"/readyz\""] {
        ensure!(
            admin_src.contains(&format!(".route({route}")),
            "the admin router has no {route}"
        );
    }

    let pre_stop: Vec<&str> = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .context("no preStop exec")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let [sleep, seconds] = pre_stop[..] else {
        bail!("preStop is {pre_stop:?}, expected [sleep, N]");
    };
    ensure!(sleep == "sleep", "preStop runs {sleep}");
    // `sleep` comes with the runtime image's coreutils.
    let containerfile = std::fs::read_to_string(repo_root().join("deploy/Containerfile"))?;
    ensure!(containerfile.contains("FROM docker.io/library/debian:"));
    let pre_stop_s: f64 = seconds.parse().context("preStop sleep seconds")?;
    let shutdown_timeout = section["shutdown_timeout"]
        .as_float()
        .context("shutdown_timeout must be set explicitly")?;
    let grace = pod(&docs)?["terminationGracePeriodSeconds"]
        .as_f64()
        .context("terminationGracePeriodSeconds")?;
    ensure!(
        pre_stop_s + shutdown_timeout < grace,
        "preStop {pre_stop_s} s + shutdown_timeout {shutdown_timeout} s >= grace period {grace} s"
    );
    ensure!(pre_stop_s > 0.0, "no preStop sleep");
    Ok(())
}

#[test]
fn pods_run_unprivileged_with_resources() -> Result<()> {
    let docs = documents()?;
    let pod = pod(&docs)?;
    let container = container(&docs)?;
    let sc = &container["securityContext"];
    ensure!(
        sc["readOnlyRootFilesystem"] == true,
        "root filesystem writable"
    );
    ensure!(sc["allowPrivilegeEscalation"] == false);
    ensure!(sc["capabilities"]["drop"] == json!(["ALL"]));
    ensure!(pod["securityContext"]["runAsNonRoot"] == true || sc["runAsNonRoot"] == true);
    // The image's user (deploy/Containerfile: USER 10001).
    ensure!(pod["securityContext"]["runAsUser"] == 10001);
    ensure!(pod["automountServiceAccountToken"] == false);
    ensure!(
        pod["enableServiceLinks"] == false,
        "service links put PGVIGIL_* variables into pgvigil's environment"
    );
    let resources = &container["resources"];
    for key in ["cpu", "memory"] {
        ensure!(resources["requests"].get(key).is_some(), "no {key} request");
    }
    ensure!(
        resources["limits"].get("memory").is_some(),
        "no memory limit"
    );
    Ok(())
}

/// The password and the admin token come from the Secret's files; the
/// ConfigMap holds none, and the Secret ships empty (pgvigil refuses to
/// start on it, see `the_configmap_config_runs_in_the_real_binary`).
#[test]
fn secrets_come_from_the_secret_never_the_configmap() -> Result<()> {
    let docs = documents()?;
    let (text, config) = pgvigil_toml(&docs)?;
    for key in ["password =", "admin_token", "password_env"] {
        ensure!(
            !text.contains(key),
            "the ConfigMap's pgvigil.toml sets {key}"
        );
    }
    let secret = the(&docs, "Secret")?;
    let secret_name = secret["metadata"]["name"].clone();
    let keys: BTreeMap<String, String> = serde_json::from_value(secret["stringData"].clone())?;
    ensure!(
        secret.get("data").is_none(),
        "the Secret has base64 data: values belong in an overlay"
    );
    for (key, value) in &keys {
        ensure!(value.is_empty(), "the Secret ships a value for {key}");
    }
    let secrets_mount = mount_path(&docs, |v| v["secret"]["secretName"] == secret_name)?;
    let from_secret = |path: &str| -> Result<()> {
        let (dir, key) = path.rsplit_once('/').context("a file path")?;
        ensure!(dir == secrets_mount, "{path} is not in the Secret's mount");
        ensure!(keys.contains_key(key), "the Secret has no key {key}");
        Ok(())
    };
    let users = config["users"].as_table().context("[users]")?;
    ensure!(!users.is_empty());
    for (name, user) in users {
        let file = user["password_file"]
            .as_str()
            .with_context(|| format!("users.{name} has no password_file"))?;
        from_secret(file)?;
    }
    let env = container(&docs)?["env"].as_array().context("env")?;
    let token_file = env
        .iter()
        .find(|e| e["name"] == "PGVIGIL_ADMIN_TOKEN_FILE")
        .and_then(|e| e["value"].as_str())
        .context("no PGVIGIL_ADMIN_TOKEN_FILE")?;
    from_secret(token_file)?;
    ensure!(
        env.iter().all(|e| e["name"] != "PGVIGIL_ADMIN_TOKEN"),
        "the token itself is in the pod spec"
    );
    Ok(())
}

/// `promtool check rules` on a rule file with the content `groups`
/// (JSON, which promtool reads as YAML).
fn promtool_check_rules(groups: &Value) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rules.json");
    std::fs::write(&path, groups.to_string())?;
    let promtool = promtool();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .with_context(|| {
            format!("running {promtool} (scripts/ensure-test-tools.sh installs it)")
        })?;
    ensure!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `spec` of the PrometheusRule is deploy/prometheus/pgvigil-rules.yml from
/// `groups:` on, indented, byte for byte (so comments travel too), and
/// promtool accepts it as rendered.
#[test]
fn prometheus_rule_is_the_rules_file_and_passes_promtool() -> Result<()> {
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/pgvigil-rules.yml"))?;
    let groups = &rules[rules
        .find("\ngroups:")
        .context("no groups: in the rules file")?
        + 1..];
    let expected: String = groups
        .split_inclusive('\n')
        .map(|l| {
            if l.trim().is_empty() {
                l.to_string()
            } else {
                format!("  {l}")
            }
        })
        .collect();
    let embedded = std::fs::read_to_string(base_dir().join("prometheusrule.yaml"))?;
    let spec = &embedded[embedded.find("\nspec:\n").context("no spec:")? + "\nspec:\n".len()..];
    ensure!(
        spec == expected,
        "deploy/kubernetes/base/prometheusrule.yaml differs from \
         deploy/prometheus/pgvigil-rules.yml: run deploy/kubernetes/sync-prometheusrule.sh"
    );

    let docs = documents()?;
    let rule = the(&docs, "PrometheusRule")?;
    promtool_check_rules(&rule["spec"]).context("the PrometheusRule's spec")
}

/// Each replica opens its own pools: at maxReplicas, every pool full
/// (pool_size + max_overflow, one pool per database and user) plus each
/// replica's connections outside the pools (per database: the advisor's
/// and the health sampler's with `[advisor]` on, /readyz's login check;
/// all short-lived, counted as if open at once) must fit in PostgreSQL's
/// default max_connections (100) less superuser_reserved_connections (3),
/// as the ConfigMap's comment and docs/scaling.md say.
#[test]
fn pools_of_all_replicas_fit_in_max_connections() -> Result<()> {
    let docs = documents()?;
    let (_, config) = pgvigil_toml(&docs)?;
    let max_replicas = the(&docs, "HorizontalPodAutoscaler")?["spec"]["maxReplicas"]
        .as_u64()
        .context("maxReplicas")?;
    let pool = config.get("pool").and_then(|p| p.as_table());
    // What the binary uses where the ConfigMap says nothing.
    let defaults = pgvigil_config::PoolSettings::default();
    let setting = |db: &toml::Table, key: &str, default: usize| {
        db.get(key)
            .or_else(|| pool.and_then(|p| p.get(key)))
            .and_then(|v| v.as_integer())
            .unwrap_or(default as i64)
    };
    let databases = config["databases"].as_table().context("[databases]")?;
    let users = config["users"].as_table().context("[users]")?.len() as i64;
    let advisor_on = config
        .get("advisor")
        .and_then(|a| a.get("enabled"))
        .and_then(|e| e.as_bool())
        .unwrap_or(pgvigil_config::AdvisorSettings::default().enabled);
    let mut per_replica = 0;
    for db in databases.values() {
        let db = db.as_table().context("a database")?;
        per_replica += users
            * (setting(db, "pool_size", defaults.pool_size)
                + setting(db, "max_overflow", defaults.max_overflow));
        per_replica += 1 + 2 * i64::from(advisor_on);
    }
    let total = max_replicas as i64 * per_replica;
    ensure!(
        total <= 97,
        "{max_replicas} replicas x {per_replica} server connections = {total} > 97"
    );
    Ok(())
}

/// The autoscaler's Pods metric is one prometheus-adapter serves with the
/// shipped rule, from a series pgvigil exports (checked against the real
/// binary in `the_configmap_config_runs_in_the_real_binary`).
#[test]
fn autoscaler_metric_is_served_by_the_adapter_rule() -> Result<()> {
    let docs = documents()?;
    let metric = hpa_metric(&docs)?;
    let script = r#"
import json, sys, yaml
print(json.dumps(yaml.safe_load(open(sys.argv[1]))))
"#;
    let out = Command::new(pgvigil_integration::python::interpreter())
        .arg("-c")
        .arg(script)
        .arg(repo_root().join("deploy/kubernetes/prometheus-adapter-values.yaml"))
        .output()?;
    ensure!(
        out.status.success(),
        "prometheus-adapter-values.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Value = serde_json::from_slice(&out.stdout)?;
    let rules = values["rules"]["custom"]
        .as_array()
        .context("rules.custom")?;
    let rule = rules
        .iter()
        .find(|r| r["name"]["as"] == metric)
        .with_context(|| format!("no adapter rule serves {metric}"))?;
    let series = rule["seriesQuery"].as_str().context("seriesQuery")?;
    ensure!(
        series.starts_with(&format!("{metric}{{")),
        "the rule reads {series}"
    );
    for label in ["namespace", "pod"] {
        ensure!(
            rule["resources"]["overrides"][label]["resource"] == label,
            "the rule does not map {label}"
        );
    }
    ensure!(
        rule["metricsQuery"]
            .as_str()
            .is_some_and(|q| q.starts_with("sum by (<<.GroupBy>>)")),
        "the adapter must sum the per-pool series per pod"
    );
    Ok(())
}

fn hpa_metric(docs: &[Value]) -> Result<String> {
    let metrics = the(docs, "HorizontalPodAutoscaler")?["spec"]["metrics"]
        .as_array()
        .context("metrics")?;
    ensure!(metrics.len() == 1, "one metric expected");
    ensure!(metrics[0]["type"] == "Pods", "not a Pods metric");
    Ok(metrics[0]["pods"]["metric"]["name"]
        .as_str()
        .context("metric name")?
        .to_string())
}

const TOKEN: &str = "k8s-token-71c0";

/// The ConfigMap's pgvigil.toml, its database pointed at the test cluster
/// and its Secret paths at files holding the test credentials: pgvigil
/// starts (listen flags from the harness), logs JSON, is live and ready,
/// wants the token, and exports the autoscaler's metric. With the Secret's
/// values as shipped (empty), it refuses to start, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_config_runs_in_the_real_binary() -> Result<()> {
    timed(Duration::from_secs(60), async {
        let docs = documents()?;
        let (text, _) = pgvigil_toml(&docs)?;
        let metric = hpa_metric(&docs)?;
        let cluster = shared_cluster();
        let secrets = tempfile::tempdir()?;
        let secrets_dir = secrets.path().to_str().context("temp path")?;
        let config = text
            .replace("host = \"postgres\"", "host = \"127.0.0.1\"")
            .replace("port = 5432", &format!("port = {}", cluster.port()))
            .replace("/run/secrets/pgvigil", secrets_dir);
        ensure!(config.contains(secrets_dir) && config.contains("127.0.0.1"));

        // As shipped: empty files.
        std::fs::write(secrets.path().join("admin-token"), "")?;
        std::fs::write(secrets.path().join("app-password"), "")?;
        let token_file = secrets.path().join("admin-token");
        let token_arg = token_file.to_str().context("temp path")?;
        let run = run_cli(
            &["--admin-token-file", token_arg],
            Some(&config),
            Duration::from_secs(10),
        )?;
        ensure!(
            run.status.and_then(|s| s.code()) == Some(2),
            "an empty admin token: {:?}; {}",
            run.status,
            run.stderr
        );
        std::fs::write(&token_file, format!("{TOKEN}\n"))?;
        let run = run_cli(
            &["--admin-token-file", token_arg],
            Some(&config),
            Duration::from_secs(10),
        )?;
        ensure!(
            run.status.and_then(|s| s.code()) == Some(2)
                && run.stderr.contains("users.app.password_file"),
            "an empty password file: {:?}; {}",
            run.status,
            run.stderr
        );

        std::fs::write(secrets.path().join("app-password"), "secret\n")?;
        let vigil = Pgvigil::builder_with_config(cluster, config)
            .env("PGVIGIL_ADMIN_TOKEN_FILE", token_arg)
            .spawn()
            .await?;
        let healthz = vigil.http_get("/healthz", &[]).await?;
        ensure!(healthz.status == 200, "/healthz: {}", healthz.status);
        // /readyz logs in to appdb with the password from the file.
        let readyz = vigil.http_get("/readyz", &[]).await?;
        ensure!(
            readyz.status == 200,
            "/readyz: {} {}; stderr:\n{}",
            readyz.status,
            readyz.body,
            vigil.stderr()
        );
        let api = vigil.http_get("/api/queries", &[]).await?;
        ensure!(
            api.status == 401,
            "the API without the token: {}",
            api.status
        );

        let client = vigil.connect_app().await?;
        client.simple_query("SELECT 1").await?;
        let series = format!("{metric}{{");
        let counted = wait_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async {
                let page = vigil.http_get("/metrics", &[]).await?;
                Ok(page
                    .body
                    .lines()
                    .any(|l| l.starts_with(&series) && l.ends_with(" 1")))
            },
        )
        .await?;
        ensure!(
            counted,
            "no {metric} series counting the client on /metrics"
        );

        let log = vigil.stderr();
        let first = log.lines().next().context("no log line")?;
        ensure!(
            serde_json::from_str::<Value>(first).is_ok(),
            "log_format json: {first}"
        );
        ensure!(!log.contains(TOKEN), "the token is in the log");
        Ok(())
    })
    .await
}

/// The PromQL in docs/scaling.md (its `promql` blocks and the first
/// expression of each row of its aggregates table) parses, checked by
/// promtool as recording rules, and every pgvigil metric it names is one
/// pgvigil exports.
#[test]
fn scaling_doc_promql_parses_and_names_real_metrics() -> Result<()> {
    let doc = std::fs::read_to_string(repo_root().join("docs/scaling.md"))?;
    let mut exprs = Vec::new();
    let mut blocks = doc.split("```promql\n").skip(1);
    for block in blocks.by_ref() {
        let block = &block[..block.find("```").context("unclosed promql block")?];
        for expr in block.split("\n\n") {
            let expr: Vec<&str> = expr
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                .collect();
            if !expr.is_empty() {
                exprs.push(expr.join("\n"));
            }
        }
    }
    let table_start = doc
        .find("| what | PromQL |")
        .context("no aggregates table")?;
    for row in doc[table_start..].lines().skip(2) {
        if !row.starts_with('|') {
            break;
        }
        let cell = row
            .split('|')
            .nth(2)
            .context("a row without a PromQL cell")?;
        let expr = cell
            .split('`')
            .nth(1)
            .context("a PromQL cell without code")?;
        exprs.push(expr.to_string());
    }
    ensure!(exprs.len() >= 8, "only {} expressions found", exprs.len());
    ensure!(
        exprs
            .iter()
            .any(|e| e
                .contains("sum by (fingerprint, le) (rate(pgvigil_query_duration_seconds_bucket")),
        "the percentile aggregation across replicas is missing"
    );

    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "record": format!("scaling:doc_{i}"), "expr": e }))
        .collect();
    promtool_check_rules(&json!({ "groups": [{ "name": "scaling", "rules": rules }] }))
        .with_context(|| format!("PromQL in docs/scaling.md: {exprs:#?}"))?;

    let mut exported = String::new();
    let admin = repo_root().join("crates/pgvigil-admin/src");
    for file in ["metrics.rs", "metrics/health.rs"] {
        exported += &std::fs::read_to_string(admin.join(file))?;
    }
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("pgvigil_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        // `pgvigil_pool_*` in prose names a prefix.
        let quoted = if name.ends_with('_') {
            format!("\"{name}")
        } else {
            format!("\"{family}\"")
        };
        ensure!(
            exported.contains(&quoted) || exported.contains(&format!("\"{name}\"")),
            "docs/scaling.md names {name}, which pgvigil does not export"
        );
    }
    Ok(())
}
