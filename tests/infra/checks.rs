//! Static checks of `infra/`: `terraform fmt`, `validate`, `terraform test` (the
//! `infra/tests/*.tftest.hcl` files, on a mocked provider) and checkov (pinned in `.ci/run`),
//! which must find nothing, with every skip explained next to its resource.

use std::process::Command;

use crate::common::{find_in_path, missing};
use crate::terraform::{Workdir, check, infra_dir, terraform_bin};

#[test]
fn terraform_fmt_finds_nothing_to_change() {
    let Some(terraform) = terraform_bin() else {
        return;
    };
    // fmt reads no provider and writes nothing with -check: run it on the source itself.
    let out = Command::new(terraform)
        .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
        .current_dir(infra_dir())
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform fmt");
    check(&out, &["fmt", "-check"]);
}

#[test]
fn terraform_validate_and_terraform_test_pass() {
    let Some(tf) = Workdir::new() else {
        return;
    };
    tf.init();
    tf.ok(&["validate", "-no-color"]);
    let out = tf.ok(&["test", "-no-color"]);
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("passed"))
        .unwrap_or("");
    eprintln!("terraform test: {summary}");
    assert!(
        summary.starts_with("Success!") && !summary.contains(" 0 passed"),
        "terraform test ran nothing? {out}"
    );
}

#[test]
fn checkov_finds_nothing_and_every_skip_has_a_reason() {
    let Some(checkov) = find_in_path("checkov") else {
        missing("checkov not installed (pip install checkov, the version .ci/run pins)");
        return;
    };
    let Some(tf) = Workdir::new() else {
        return;
    };
    let out = Command::new(checkov)
        .args([
            "--directory",
            ".",
            "--framework",
            "terraform",
            "--skip-download",
        ])
        .args(["--output", "json", "--compact", "--quiet"])
        .current_dir(tf.path())
        .output()
        .expect("run checkov");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov wrote no JSON report ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One framework: one report object (a list when checkov ran several).
    let report = match report {
        serde_json::Value::Array(mut reports) => reports.remove(0),
        other => other,
    };
    let summary = &report["summary"];
    let count = |key: &str| summary[key].as_u64().unwrap_or(0);
    eprintln!(
        "checkov {}: {} passed, {} failed, {} skipped, {} parsing errors",
        summary["checkov_version"].as_str().unwrap_or("?"),
        count("passed"),
        count("failed"),
        count("skipped"),
        count("parsing_errors"),
    );
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} ({}:{})",
                c["check_id"].as_str().unwrap_or("?"),
                c["resource"].as_str().unwrap_or("?"),
                c["file_path"].as_str().unwrap_or("?"),
                c["file_line_range"]
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "checkov failed checks:\n{}",
        failed.join("\n")
    );
    assert_eq!(count("parsing_errors"), 0, "checkov could not parse infra/");
    assert!(
        count("passed") > 100,
        "checkov checked almost nothing: {summary}"
    );
    for skipped in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let reason = skipped["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or("");
        assert!(
            reason.trim().len() >= 20,
            "checkov skip of {} on {} has no real reason: {reason:?}",
            skipped["check_id"],
            skipped["resource"]
        );
    }
}
