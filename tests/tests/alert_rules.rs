//! The Prometheus config, alert rules and Grafana dashboard shipped in
//! `deploy/`: `promtool check config`, `promtool check rules`, the rules' unit
//! tests (`promtool test rules`, one firing and one quiet case per alert) and
//! a parse check of every PromQL expression in the dashboard.
//!
//! Needs `promtool`, from Debian's `prometheus` package
//! (`apt-get install prometheus`); `PROMTOOL` overrides the binary.

use std::path::{Path, PathBuf};

use pgvigil_integration::repo::run_promtool;
use serde_json::{json, Value};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn prometheus_dir() -> PathBuf {
    deploy_dir().join("prometheus")
}

#[test]
fn prometheus_config_is_valid() {
    // rule_files in prometheus.yml are relative to the config file.
    run_promtool(&prometheus_dir(), &["check", "config", "prometheus.yml"]);
}

#[test]
fn alert_rules_are_valid() {
    let out = run_promtool(&prometheus_dir(), &["check", "rules", "pgvigil-rules.yml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SUCCESS"),
        "unexpected promtool output:\n{stdout}"
    );
}

#[test]
fn alert_rule_unit_tests_pass() {
    run_promtool(
        &prometheus_dir(),
        &["test", "rules", "pgvigil-rules.test.yml"],
    );
}

/// Every alert in the rules file has a firing and a quiet case in the unit
/// tests, a severity and the two annotations.
#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let rules = std::fs::read_to_string(prometheus_dir().join("pgvigil-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(prometheus_dir().join("pgvigil-rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::trim)
        .collect();
    assert!(
        alerts.len() >= 6,
        "expected at least 6 alerts, found {alerts:?}"
    );
    for alert in &alerts {
        let fires = tests.contains(&format!("- name: {alert} fires"));
        let quiet = tests.contains(&format!("- name: {alert} stays quiet"));
        assert!(
            fires && quiet,
            "alert {alert}: firing case present: {fires}, quiet case present: {quiet}"
        );
    }
    assert_eq!(
        rules.matches("severity: ").count(),
        alerts.len(),
        "every alert needs a severity label"
    );
    assert_eq!(
        rules.matches("summary: ").count(),
        alerts.len(),
        "every alert needs a summary"
    );
    assert_eq!(
        rules.matches("description: ").count(),
        alerts.len(),
        "every alert needs a description"
    );
}

fn collect_exprs(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        if let Some(targets) = panel["targets"].as_array() {
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: target without expr"));
                out.push((title.clone(), expr.to_string()));
            }
        }
        if let Some(inner) = panel["panels"].as_array() {
            collect_exprs(inner, out);
        }
    }
}

/// The dashboard is valid JSON, uses the datasource variable everywhere, and
/// every panel's PromQL parses (checked by promtool as recording rules, with
/// Grafana's variables replaced by sample values).
#[test]
fn grafana_dashboard_queries_parse() {
    let path = deploy_dir().join("grafana/pgvigil-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    let panels = dashboard["panels"].as_array().expect("panels");

    let mut exprs = Vec::new();
    collect_exprs(panels, &mut exprs);
    assert!(exprs.len() >= 15, "only {} panel queries", exprs.len());
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {:?} does not use the datasource variable",
            panel["title"]
        );
    }

    let substitute = |e: &str| {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$fingerprint", ".*");
        assert!(!e.contains('$'), "unsubstituted variable in {e}");
        e
    };
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| json!({ "record": format!("dashboard:query_{i}"), "expr": substitute(e) }))
        .collect();
    let file = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });

    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("dashboard.rules.json");
    std::fs::write(&rules_path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out = run_promtool(
        dir.path(),
        &["check", "rules", rules_path.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "unexpected promtool output:\n{stdout}"
    );
}

/// The dashboard's "N+1 detections" stat counts a pair's first detection: a
/// counter series is born at 1, which plain `increase()` reads as 0. Checked
/// by `promtool test rules` on a series absent for 10 minutes, then at 1.
/// The pools row also shows paused pools.
#[test]
fn grafana_n_plus_one_stat_counts_a_first_detection_and_paused_pools_are_shown() {
    let path = deploy_dir().join("grafana/pgvigil-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let expr_of = |title: &str| {
        let panel = panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?} in the dashboard"));
        panel["targets"][0]["expr"].as_str().unwrap().to_string()
    };
    assert!(expr_of("Paused pools").contains("pgvigil_pool_paused"));

    let stat = expr_of("N+1 detections")
        .replace("$__range", "15m")
        .replace("$instance", ".*");
    let dir = tempfile::tempdir().unwrap();
    let rules = json!({ "groups": [{ "name": "dashboard", "rules": [
        { "record": "dashboard:n_plus_one", "expr": stat }
    ]}]});
    std::fs::write(dir.path().join("n1.rules.json"), rules.to_string()).unwrap();
    let test = json!({
        "rule_files": ["n1.rules.json"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{
                "series": "pgvigil_n_plus_one_total{fingerprint=\"9f3c2a1b7d6e5f40\", parent_fingerprint=\"0b5e7c9d1a2f3e48\", instance=\"127.0.0.1:9930\", job=\"pgvigil\"}",
                "values": "_x10 1x20"
            }],
            "promql_expr_test": [{
                "expr": "dashboard:n_plus_one",
                "eval_time": "20m",
                "exp_samples": [{ "labels": "dashboard:n_plus_one", "value": 1 }]
            }]
        }]
    });
    std::fs::write(dir.path().join("n1.test.json"), test.to_string()).unwrap();
    run_promtool(dir.path(), &["test", "rules", "n1.test.json"]);
}
