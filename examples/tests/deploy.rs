//! The files under `deploy/`: the Prometheus alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and the Grafana
//! dashboard is valid JSON whose queries use only the metric names the
//! workers serve, with a panel for each figure the dashboard promises.
//!
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs
//! it). Without it the promtool checks print a note and pass, except under
//! `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const RULES: &str = "deploy/prometheus/rabbit-worker.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/rabbit-worker.rules.test.yml";
const DASHBOARD: &str = "deploy/grafana/rabbit-worker.json";

/// Every metric name a dashboard query may read: what the workers serve
/// (worker-core's one list of metrics), the `_sum`/`_count` series of
/// every distribution (exported as summaries), and Prometheus's `up`.
fn known_metrics() -> BTreeSet<String> {
    let mut known = BTreeSet::from(["up".to_owned()]);
    for metric in worker_core::metric_names::METRICS {
        known.insert(metric.name.to_owned());
        if metric.kind == worker_core::metric_names::MetricKind::Histogram {
            known.insert(format!("{}_sum", metric.name));
            known.insert(format!("{}_count", metric.name));
        }
    }
    known
}

/// The figures the dashboard must show: for each, strings that one query
/// of one panel must all contain.
const FIGURES: &[(&str, &[&str])] = &[
    ("deliveries rate", &["rate(rabbit_worker_deliveries_total{"]),
    (
        "rates by outcome",
        &["rate(rabbit_worker_outcomes_total{", "by (outcome)"],
    ),
    (
        "handler duration percentiles",
        &["rabbit_worker_handler_seconds{", "quantile=\"0.99\""],
    ),
    ("in flight", &["rabbit_worker_in_flight{"]),
    (
        "queue depths",
        &[
            "rabbit_worker_queue_messages{",
            "role=~\"work|tier|quarantine\"",
        ],
    ),
    ("consumers", &["rabbit_worker_queue_consumers{"]),
    (
        "parked messages",
        &["rabbit_worker_queue_messages{", "role=\"parking\""],
    ),
    (
        "publish confirm latency",
        &["rabbit_worker_publish_confirm_seconds{", "quantile="],
    ),
    ("connection blocked", &["rabbit_worker_connection_blocked{"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ sits in the workspace")
        .to_path_buf()
}

/// Runs promtool with `args` from the workspace root; `None` when promtool
/// is not installed and this is not CI.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            worker_testkit::skip::unless_ci(format!(
                "promtool is not installed, so `promtool {}` was skipped \
                 (apt-get install prometheus)",
                args.join(" ")
            ));
            None
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

fn assert_success(args: &[&str], out: &std::process::Output) {
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check() {
    let args = ["check", "rules", RULES];
    if let Some(out) = promtool(&args) {
        assert_success(&args, &out);
    }
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let args = ["test", "rules", RULE_TESTS];
    if let Some(out) = promtool(&args) {
        assert_success(&args, &out);
    }
}

#[test]
fn every_alert_has_a_firing_and_a_non_firing_test() {
    let rules = std::fs::read_to_string(root().join(RULES)).unwrap();
    let tests = std::fs::read_to_string(root().join(RULE_TESTS)).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(!alerts.is_empty(), "no alert found in {RULES}");
    for alert in alerts {
        // Each `alertname:` line opens one case; the next `exp_alerts:`
        // says whether it expects the alert to fire (a list follows) or not
        // (`[]`).
        let mut firing = false;
        let mut quiet = false;
        let mut lines = tests.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line != format!("alertname: {alert}") {
                continue;
            }
            match lines.find(|l| l.starts_with("exp_alerts:")) {
                Some("exp_alerts: []") => quiet = true,
                Some(_) => firing = true,
                None => {}
            }
        }
        assert!(firing, "{alert} has no test case in which it fires");
        assert!(quiet, "{alert} has no test case in which it stays quiet");
    }
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("a panels array") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["expr"].as_str()).collect())
        .unwrap_or_default()
}

/// The metric names a PromQL expression selects: identifiers outside
/// strings, label matchers, ranges and grouping lists, that are neither a
/// function (followed by `(`), an aggregation (whose grouping may come
/// before its `(`) nor a keyword.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut skip_list = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' | '[' => {
                // Label matchers or a range: skip to the closing bracket,
                // over strings (a matcher's value may hold `}` or `]`).
                let close = if c == '{' { '}' } else { ']' };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i = match chars[i] {
                        '"' | '\'' | '`' => skip_string(&chars, i),
                        _ => i + 1,
                    };
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_list = false;
            }
            '$' | '0'..='9' | '.' => {
                // A variable, a number or a duration.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.".contains(chars[i])) {
                    i += 1;
                }
            }
            c if c.is_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_:".contains(chars[i])) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                {
                    skip_list = true;
                } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The index after the string literal that opens at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

#[test]
fn metric_name_scanner_finds_selectors_only() {
    let names = metric_names(
        "sum by (task, queue) (rate(rabbit_worker_outcomes_total{task=~\"$task\", queue=~\"${queue}(x\\\"}y)?\", outcome!=\"retry\"}[$__rate_interval])) \
         / on (task) group_left sum without (instance) (rate(rabbit_worker_handler_seconds_count[5m])) \
         or vector(0) > 0.5 and up == bool 1",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "rabbit_worker_handler_seconds_count",
            "rabbit_worker_outcomes_total",
            "up"
        ]
    );
}

#[test]
fn dashboard_reads_only_known_metrics() {
    let dash = dashboard();
    let known = known_metrics();
    let mut seen = 0;
    for panel in panels(&dash) {
        for expr in exprs(panel) {
            seen += 1;
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {} reads no metric: {expr}",
                panel["title"]
            );
            for name in names {
                assert!(
                    known.contains(name.as_str()),
                    "panel {} reads `{name}`, which no worker serves (known: {known:?}): {expr}",
                    panel["title"]
                );
            }
        }
    }
    assert!(seen > 0, "the dashboard has no query");
}

#[test]
fn dashboard_has_a_panel_for_each_figure() {
    let dash = dashboard();
    let all = panels(&dash);
    for (figure, needles) in FIGURES {
        assert!(
            all.iter().any(|p| exprs(p)
                .iter()
                .any(|e| needles.iter().all(|n| e.contains(n)))),
            "no panel shows the {figure} (a query containing {needles:?})"
        );
    }
}

#[test]
fn dashboard_is_importable() {
    let dash = dashboard();
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|t| !t.is_empty()));
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("template variables");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["task", "queue"] {
        let v = var(name).unwrap_or_else(|| panic!("no `{name}` variable"));
        assert_eq!(v["datasource"]["uid"], "${datasource}", "variable {name}");
    }
    let mut ids = BTreeSet::new();
    for panel in panels(&dash) {
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        assert!(panel["gridPos"].is_object(), "panel {id} has no gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {id} has no title"
        );
        assert!(
            !exprs(panel).is_empty(),
            "panel {} has no query",
            panel["title"]
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} does not use the datasource variable",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
}

/// The dashboard's queries parse as PromQL: with the Grafana variables
/// replaced by plain values, each becomes a recording rule that `promtool
/// check rules` parses.
#[test]
fn dashboard_queries_parse() {
    let dash = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in panels(&dash).into_iter().flat_map(exprs).enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("${queue}", ".*")
            .replace("$job", ".*")
            .replace("$task", ".*")
            .replace("$queue", ".*");
        assert!(
            !expr.contains('$'),
            "a variable the test does not know: {expr}"
        );
        rules.push_str(&format!(
            "      - record: dashboard:query{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let path = std::env::temp_dir().join(format!(
        "rabbit-worker-dashboard-{}.rules.yml",
        std::process::id()
    ));
    std::fs::write(&path, rules).unwrap();
    let path_str = path.to_str().unwrap().to_owned();
    let args = ["check", "rules", path_str.as_str()];
    let out = promtool(&args);
    let _ = std::fs::remove_file(&path);
    if let Some(out) = out {
        assert_success(&args, &out);
    }
}
