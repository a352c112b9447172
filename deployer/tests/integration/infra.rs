//! `deployer infra`: the committed ARM templates validate with their
//! parameter files filled in; a broken template or a missing value fails
//! with the problem named.

use std::path::Path;

use crate::support::{deployer, repo_root, text, Scratch};

const VALUES: [&str; 4] = [
    "--set",
    "PREFIX=modelopsprod",
    "--set",
    "LOCATION=westeurope",
];

#[test]
fn the_committed_templates_validate_and_render_filled_parameters() {
    let out = deployer(&[&["infra", "validate"][..], &VALUES].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3 templates valid\n");

    let scratch = Scratch::new("infra-render");
    let output = scratch.0.to_str().unwrap();
    let out = deployer(
        &[&["infra", "render", "--output", output][..], &VALUES].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let aks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.0.join("aks.parameters.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        aks["parameters"]["clusterName"]["value"],
        "modelopsprod-aks"
    );
    assert_eq!(
        aks["parameters"]["registryName"]["value"],
        "modelopsprodacr"
    );
    assert_eq!(aks["parameters"]["location"]["value"], "westeurope");
    // Cosmos DB is partitioned as serve writes telemetry: by /model.
    let cosmos: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("infra/templates/cosmos.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cosmos["resources"][2]["properties"]["resource"]["partitionKey"]["paths"][0],
        "/model"
    );
}

fn copy_infra(to: &Path) {
    for folder in ["templates", "parameters"] {
        std::fs::create_dir_all(to.join(folder)).unwrap();
        for entry in std::fs::read_dir(repo_root().join("infra").join(folder)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(folder).join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_broken_template_or_missing_value_fails_with_the_problem_named() {
    let out = deployer(&["infra", "validate", "--set", "PREFIX=x"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("acr.parameters.json:6: ${LOCATION} has no value"),
        "{}",
        text(&out.stderr)
    );

    let scratch = Scratch::new("infra-broken");
    copy_infra(&scratch.0);
    let template = scratch.0.join("templates/cosmos.json");
    let broken = std::fs::read_to_string(&template).unwrap().replace(
        "\"apiVersion\": \"2024-05-15\",\n      \"name\": \"[parameters('accountName')]\"",
        "\"apiVersion\": \"2024-05\",\n      \"name\": \"[parameters('acountName')]\"",
    );
    std::fs::write(&template, broken).unwrap();
    let dir = scratch.0.to_str().unwrap();
    let out = deployer(
        &[&["infra", "validate", "--infra-dir", dir][..], &VALUES].concat(),
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("2 problem(s):"), "{stderr}");
    assert!(stderr.contains("templates/cosmos.json: resource 0 (Microsoft.DocumentDB/databaseAccounts): apiVersion `2024-05` is not YYYY-MM-DD[-preview]"), "{stderr}");
    assert!(
        stderr.contains("templates/cosmos.json: `parameters('acountName')` is not defined"),
        "{stderr}"
    );

    // A parameter file naming a parameter the template lacks, and JSON that
    // does not parse.
    copy_infra(&scratch.0);
    let parameters = scratch.0.join("parameters/aks.parameters.json");
    let text_ = std::fs::read_to_string(&parameters)
        .unwrap()
        .replace("\"nodeCount\"", "\"nodeCnt\"");
    std::fs::write(&parameters, text_).unwrap();
    let out = deployer(
        &[&["infra", "validate", "--infra-dir", dir][..], &VALUES].concat(),
        &[],
    );
    assert!(
        text(&out.stderr).contains(
            "parameters/aks.parameters.json: `nodeCnt` is not a parameter of the template"
        ),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(scratch.0.join("templates/acr.json"), "{\"$schema\": ").unwrap();
    let out = deployer(
        &[&["infra", "validate", "--infra-dir", dir][..], &VALUES].concat(),
        &[],
    );
    assert!(
        text(&out.stderr).contains("templates/acr.json: invalid JSON"),
        "{}",
        text(&out.stderr)
    );
}
