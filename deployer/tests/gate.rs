//! `deployer test`: the gate passes the bundled models (all three tiers,
//! the real serve binary included), rejects a bad model at the acceptance
//! tier, and fails with a clear message on each kind of bad input.

mod support;

use support::{broken_model, copy_dir, deployer, model, serve_binary, Run, Scratch};

fn gate(dir: &std::path::Path, extra: &[&str]) -> Run {
    serve_binary();
    let mut args = vec!["test", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    deployer(&args, &[])
}

fn passes(name: &str) -> Run {
    let run = gate(&model(name), &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    for line in [
        "[1/3 item]",
        "[2/3 acceptance]",
        "[3/3 integration]",
        "macro-F1",
        "confusion",
        "infer: ",
        "SIGTERM: serve exited cleanly (status 0)",
        &format!("gate passed: {name} version 1"),
    ] {
        assert!(
            run.stdout.contains(line),
            "`{line}` missing:\n{}",
            run.output()
        );
    }
    run
}

#[test]
fn iris_passes() {
    let run = passes("iris");
    assert!(run.stdout.contains("accuracy 1.0000"), "{}", run.stdout);
}

#[test]
fn wine_passes() {
    passes("wine");
}

#[test]
fn digits_passes() {
    let run = passes("digits");
    // 540 rows go to the server in 64-row requests.
    assert!(
        run.stdout.contains("540 rows in 9 requests"),
        "{}",
        run.stdout
    );
}

/// A copy of iris whose class labels are listed in the wrong order, as a
/// label encoder mix-up at export would leave them: it loads, its signature
/// is sane, and it is wrong on every versicolor and virginica row.
fn bad_iris(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.path("iris");
    copy_dir(&model("iris"), &dir);
    let toml = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    let swapped = toml.replace(
        r#"labels = ["setosa", "versicolor", "virginica"]"#,
        r#"labels = ["setosa", "virginica", "versicolor"]"#,
    );
    assert_ne!(toml, swapped);
    std::fs::write(dir.join("model.toml"), swapped).unwrap();
    dir
}

#[test]
fn a_bad_model_fails_the_acceptance_tier() {
    let scratch = Scratch::new("bad-model");
    let run = gate(&bad_iris(&scratch), &[]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.stdout.contains("[2/3 acceptance]"), "{}", run.stdout);
    assert!(!run.stdout.contains("[3/3 integration]"), "{}", run.stdout);
    assert!(
        run.stderr.contains("acceptance tier failed: accuracy 0."),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("below 0.9500 (model.toml)"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_production_record_is_written_and_guards_against_regressions() {
    let scratch = Scratch::new("production");
    let dir = scratch.path("wine");
    copy_dir(&model("wine"), &dir);
    let run = gate(&dir, &["--record-production"]);
    assert_eq!(run.code, 0, "{}", run.output());
    let record = std::fs::read_to_string(dir.join("production.toml")).unwrap();
    assert!(record.contains("version = 1"), "{record}");
    let accuracy: f64 = record
        .lines()
        .find_map(|l| l.strip_prefix("accuracy = "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(accuracy > 0.93 && accuracy < 1.0, "{record}");

    // Against its own record the model passes ...
    let run = gate(&dir, &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout.contains("(production v1 - 0.01): ok"),
        "{}",
        run.stdout
    );

    // ... but not against a better one, unless the margin allows it.
    let better = record.replace(&format!("accuracy = {accuracy}"), "accuracy = 1.0");
    std::fs::write(dir.join("production.toml"), better).unwrap();
    let run = gate(&dir, &[]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr.contains("below 0.9900 (production v1 - 0.01)"),
        "{}",
        run.stderr
    );
    let run = gate(&dir, &["--max-regression", "0.05"]);
    assert_eq!(run.code, 0, "{}", run.output());
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let scratch = Scratch::new("bad-inputs");
    let fails = |dir: &std::path::Path, extra: &[&str], message: &str| {
        let run = gate(dir, extra);
        assert_eq!(run.code, 1, "{}", run.output());
        assert!(
            run.stderr.contains(message),
            "`{message}` missing:\n{}",
            run.stderr
        );
    };

    let no_test_set = scratch.path("no_test_set");
    copy_dir(&model("iris"), &no_test_set);
    std::fs::remove_file(no_test_set.join("test.csv")).unwrap();
    fails(
        &no_test_set,
        &[],
        "item tier failed: held-back test set: cannot read",
    );

    let broken = broken_model(&scratch, "broken");
    fails(
        &broken,
        &[],
        "item tier failed: model `broken` version 1 does not load",
    );

    let changed = scratch.path("changed");
    copy_dir(&model("iris"), &changed);
    let mut csv = std::fs::read_to_string(changed.join("test.csv")).unwrap();
    csv.push_str("5.0,3.0,1.0,0.2,setosa\n");
    std::fs::write(changed.join("test.csv"), csv).unwrap();
    fails(&changed, &[], "the held-back set changed since training");

    fails(&scratch.path("missing"), &[], "is not a model folder");
    fails(
        &model("iris"),
        &["--serve-binary", "/nonexistent/serve"],
        "integration tier failed: no serve binary at /nonexistent/serve",
    );
}
