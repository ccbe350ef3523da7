//! The README's reference section against the code: every metric (from
//! `metric_names::METRICS`, the one list the code records through), every
//! `rw-` header of `headers/names.rs` and every exit code of
//! worker-operator's `cli/exit.rs`, neither more nor less. Needs no broker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use worker_core::metric_names::{Metric, METRICS};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("worker-core sits in the workspace")
        .to_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's `## Reference` section.
fn reference() -> String {
    let readme = read("README.md");
    let start = readme
        .find("\n## Reference\n")
        .expect("README.md has a `## Reference` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    rest[..end].to_owned()
}

/// The rows of the table under `### heading` in the reference section,
/// as cells (header and separator rows left out).
fn table(heading: &str) -> Vec<Vec<String>> {
    let section = reference();
    let start = section
        .find(&format!("### {heading}\n"))
        .unwrap_or_else(|| panic!("README's reference has no `### {heading}`"));
    let rest = &section[start..];
    let rest = &rest[rest.find("\n|").expect("a table") + 1..];
    rest.lines()
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

fn metric_row(m: &Metric) -> String {
    let labels = if m.labels.is_empty() {
        "-".to_owned()
    } else {
        m.labels.join(", ")
    };
    format!(
        "| `{}` | {} | {} | {} |",
        m.name,
        m.kind.as_str(),
        labels,
        m.help
    )
}

#[test]
fn readme_lists_every_metric_as_the_code_defines_it() {
    let expected: Vec<String> = METRICS.iter().map(metric_row).collect();
    let section = reference();
    let found: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| `rabbit_worker_"))
        .collect();
    assert_eq!(
        found,
        expected,
        "README.md's metrics table differs from worker_core::metric_names::METRICS; the rows should read:\n\n{}\n",
        expected.join("\n")
    );
    assert_eq!(table("Metrics").len(), METRICS.len());
}

#[test]
fn readme_names_no_metric_that_does_not_exist() {
    let names: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    for file in ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"] {
        let text = read(file);
        for (i, _) in text.match_indices("rabbit_worker_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "rabbit_worker_" {
                continue; // the prefix alone (`grep rabbit_worker_`)
            }
            assert!(
                names.contains(name.as_str()),
                "{file} names {name}, which is not in metric_names::METRICS"
            );
        }
    }
}

/// Source files of worker-core and of worker-operator (which records
/// `replayed` and reads metrics for the dashboard through the same
/// constants), without their `#[cfg(test)]` modules.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                out.push((path, code));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("worker-core/src"), &mut out);
    walk(&root().join("worker-operator/src"), &mut out);
    assert!(out.len() > 20, "found the sources");
    out
}

#[test]
fn metrics_are_recorded_only_through_the_list() {
    let mut consts = Vec::new();
    for (path, code) in sources() {
        if path.ends_with("metric_names.rs") {
            for line in code.lines() {
                if let Some(rest) = line.strip_prefix("pub const ") {
                    if let Some((ident, value)) = rest.split_once(": &str = \"") {
                        let value = value.trim_end_matches("\";");
                        consts.push((ident.to_owned(), value.to_owned()));
                    }
                }
            }
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            assert!(
                !line.contains("\"rabbit_worker_"),
                "{}:{}: a metric name outside metric_names.rs (add a constant there and to METRICS): {line}",
                path.display(),
                n + 1
            );
        }
    }
    let listed: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    let defined: BTreeSet<&str> = consts.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        defined, listed,
        "every metric constant is in METRICS, and only those"
    );
    let others: String = sources()
        .into_iter()
        .filter(|(p, _)| !p.ends_with("metric_names.rs"))
        .map(|(_, code)| code)
        .collect();
    for (ident, value) in &consts {
        let used = others.match_indices(ident.as_str()).any(|(i, _)| {
            let before = others[..i].chars().next_back();
            let after = others[i + ident.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !word(before) && !word(after)
        });
        assert!(used, "{value} ({ident}) is listed but never recorded");
    }
}

#[test]
fn readme_lists_every_header_the_framework_writes() {
    let names = read("worker-core/src/headers/names.rs");
    let in_code: BTreeSet<String> = names
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": &str = \"").map(|(_, v)| v))
        .map(|v| v.trim_end_matches("\";").to_owned())
        .filter(|v| v.starts_with("rw-"))
        .collect();
    assert!(in_code.len() > 10, "read the header constants: {in_code:?}");
    let in_readme: BTreeSet<String> = table("Headers the framework writes")
        .iter()
        .map(|row| unquote(&row[0]).to_owned())
        .collect();
    assert_eq!(
        in_readme, in_code,
        "README.md's header table against the rw- constants of headers/names.rs"
    );
    // No other `rw-` name anywhere in the README.
    let readme = read("README.md");
    for (i, _) in readme.match_indices("`rw-") {
        let name: String = readme[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name == "rw-" {
            continue; // the prefix alone
        }
        assert!(
            in_code.contains(&name),
            "README.md names header {name}, which headers/names.rs does not define"
        );
    }
}

#[test]
fn readme_lists_every_exit_code() {
    let exit = read("worker-operator/src/cli/exit.rs");
    let in_code: BTreeSet<(String, String)> = exit
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": u8 = "))
        .map(|(name, code)| (code.trim_end_matches(';').to_owned(), name.to_owned()))
        .collect();
    assert!(
        in_code.len() >= 6,
        "read the exit code constants: {in_code:?}"
    );
    let in_readme: BTreeSet<(String, String)> = table("Exit codes")
        .iter()
        .map(|row| (row[0].clone(), unquote(&row[1]).to_owned()))
        .collect();
    assert_eq!(
        in_readme, in_code,
        "README.md's exit code table against the constants of cli/exit.rs"
    );
}

/// The rows of the options table in the `#[task]` documentation.
fn documented_options() -> Vec<String> {
    let lib = read("worker-macros/src/lib.rs");
    let options = &lib[lib
        .find("/// # Options")
        .expect("the macro documents its options")..];
    options
        .lines()
        .skip_while(|l| !l.starts_with("/// | option |"))
        .take_while(|l| l.starts_with("/// |"))
        .skip(2)
        .map(|l| l.trim_start_matches("/// ").to_owned())
        .collect()
}

#[test]
fn readme_lists_every_task_option_as_the_macro_documents_it() {
    let expected = documented_options();
    assert!(expected.len() > 25, "read the options table: {expected:?}");
    let found: Vec<String> = table("Task options")
        .iter()
        .map(|cells| format!("| {} |", cells.join(" | ")))
        .collect();
    assert_eq!(
        found,
        expected,
        "README.md's task options table differs from the #[task] documentation in worker-macros/src/lib.rs; the rows should read:\n\n{}\n",
        expected.join("\n")
    );
}
