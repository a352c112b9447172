//! `deployer package`: reproducible OCI layouts (same inputs, same digest;
//! a model change touches only its layer), the image's contents and
//! lineage, and what skopeo reads from the layout.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use deployer::package::layout::{self, StoredImage};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{broken_model, copy_dir, model, run_ok, stripped_serve, Scratch};

fn package_ok(output: &Path, models: &[&Path]) -> StoredImage {
    let run = support::package(output, models, &stripped_serve());
    assert_eq!(run.code, 0, "{}", run.output());
    let image = layout::read(output, Some("t1")).unwrap();
    assert!(
        run.stdout.contains(&image.manifest.digest),
        "{}",
        run.stdout
    );
    image
}

fn layer_digests(image: &StoredImage) -> Vec<String> {
    image
        .parsed
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect()
}

/// path → (mode, uid, contents) of every entry of a layer.
fn entries(dir: &Path, layer: usize, image: &StoredImage) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let blob = layout::read_blob(dir, &image.parsed.layers[layer]).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.data.as_slice()));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            (
                path,
                (e.header().mode().unwrap(), e.header().uid().unwrap(), data),
            )
        })
        .collect()
}

#[test]
fn the_same_inputs_give_the_same_digest() {
    let scratch = Scratch::new("reproducible");
    let (a, b) = (scratch.path("a"), scratch.path("b"));
    let first = package_ok(&a, &[&model("iris")]);
    let second = package_ok(&b, &[&model("iris")]);
    assert_eq!(first.manifest.digest, second.manifest.digest);
    assert_eq!(first.manifest.data, second.manifest.data);
    let files = |dir: &Path| -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&a), files(&b));
    // Base, serve binary, one model.
    assert_eq!(first.parsed.layers.len(), 3);
}

#[test]
fn a_model_change_rebuilds_only_its_layer() {
    let scratch = Scratch::new("layers");
    let wine = scratch.path("wine");
    copy_dir(&model("wine"), &wine);
    let before = package_ok(&scratch.path("before"), &[&model("iris"), &wine]);
    let toml = std::fs::read_to_string(wine.join("model.toml")).unwrap();
    std::fs::write(
        wine.join("model.toml"),
        toml.replace("Wine cultivar", "Wine cultivar (retrained)"),
    )
    .unwrap();
    let after = package_ok(&scratch.path("after"), &[&model("iris"), &wine]);
    let (b, a) = (layer_digests(&before), layer_digests(&after));
    assert_eq!(b.len(), 4);
    assert_eq!(
        b[..3],
        a[..3],
        "base, serve and iris layers must not change"
    );
    assert_ne!(b[3], a[3], "the wine layer must change");
    assert_ne!(before.manifest.digest, after.manifest.digest);
}

#[test]
fn the_image_holds_a_non_root_server_with_its_lineage() {
    let scratch = Scratch::new("contents");
    let dir = scratch.path("image");
    let image = package_ok(&dir, &[&model("iris")]);

    let base = entries(&dir, 0, &image);
    let passwd = String::from_utf8(base["etc/passwd"].2.clone()).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert_eq!(base["tmp/"].0, 0o1777);
    assert_eq!(base["home/nonroot/"].1, 65532);
    assert!(base.contains_key("etc/ssl/certs/ca-certificates.crt"));
    assert!(
        base.keys().any(|p| p.ends_with("/libc.so.6")),
        "{:?}",
        base.keys()
    );
    assert!(base.contains_key("usr/share/doc/libc6/copyright"));
    assert!(
        !base
            .keys()
            .any(|p| p.starts_with("bin/") || p.starts_with("usr/bin/")),
        "no shell"
    );

    let serve = entries(&dir, 1, &image);
    let (mode, uid, binary) = &serve["usr/local/bin/serve"];
    assert_eq!((*mode, *uid), (0o755, 0));
    assert_eq!(binary, &std::fs::read(stripped_serve()).unwrap());

    let models = entries(&dir, 2, &image);
    let onnx = std::fs::read(model("iris").join("1/model.onnx")).unwrap();
    assert_eq!(models["models/iris/1/model.onnx"].2, onnx);
    assert!(models.contains_key("models/iris/model.toml"));
    assert!(
        !models.keys().any(|p| p.ends_with(".csv")),
        "test and training data stay out"
    );

    let config: Value =
        serde_json::from_slice(&layout::read_blob(&dir, &image.parsed.config).unwrap().data)
            .unwrap();
    let runtime = &config["config"];
    assert_eq!(runtime["User"], "65532:65532");
    assert_eq!(
        runtime["Entrypoint"],
        serde_json::json!(["/usr/local/bin/serve"])
    );
    assert!(runtime["ExposedPorts"]["8080/tcp"].is_object());
    assert!(runtime["Env"]
        .as_array()
        .unwrap()
        .contains(&"MODELOPS_HOST=0.0.0.0".into()));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let sha = format!("{:x}", Sha256::digest(&onnx));
    let notes = &image.parsed.annotations;
    assert_eq!(notes["io.modelops.model.iris.sha256"], sha);
    assert_eq!(notes["io.modelops.model.iris.version"], "1");
    assert_eq!(
        notes["io.modelops.model.iris.training-data-sha256"],
        "2919958ce33ea55c4dbc4ada6e1c612ee9e82b5985348383155be92032be01bf"
    );
    assert_eq!(notes["org.opencontainers.image.revision"], "0123abc");
    assert!(
        notes["io.modelops.base.packages"].contains("libc6="),
        "{notes:?}"
    );
    assert_eq!(
        runtime["Labels"]["io.modelops.model.iris.sha256"],
        sha.as_str()
    );
}

#[test]
fn skopeo_reads_the_layout() {
    let scratch = Scratch::new("skopeo-layout");
    let dir = scratch.path("image");
    let image = package_ok(&dir, &[&model("iris")]);
    let inspected =
        run_ok(Command::new("skopeo").args(["inspect", &format!("oci:{}:t1", dir.display())]));
    let inspected: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], image.manifest.digest.as_str());
    assert_eq!(
        inspected["Layers"],
        serde_json::json!(layer_digests(&image))
    );
    assert_eq!(inspected["Labels"]["io.modelops.models"], "iris");
    assert_eq!(inspected["Architecture"], "amd64");
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let scratch = Scratch::new("package-bad");
    let out = scratch.path("image");
    let fails = |output: &Path, model: &Path, serve: &Path, message: &str| {
        let run = support::package(output, &[model], serve);
        assert_eq!(run.code, 1, "{}", run.output());
        assert!(
            run.stderr.contains(message),
            "`{message}` missing:\n{}",
            run.stderr
        );
    };
    let serve = stripped_serve();
    let missing = Path::new("/nonexistent/serve");
    fails(
        &out,
        &model("iris"),
        missing,
        "serve binary /nonexistent/serve: not found",
    );
    let broken = broken_model(&scratch, "broken");
    fails(
        &out,
        &broken,
        &serve,
        "model `broken` version 1 does not load",
    );
    assert!(!out.join("index.json").exists(), "nothing written");

    // A folder that is not an image layout is never overwritten.
    let precious = scratch.path("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep").unwrap();
    fails(
        &precious,
        &model("iris"),
        &serve,
        "holds no OCI layout: not overwriting it",
    );
    assert!(precious.join("notes.txt").exists());
}
