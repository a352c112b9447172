//! Model-level micro-benchmarks (no HTTP): load + optimize time, and scoring
//! at batch 1 (cycling through the held-back rows) and batch 64 (the rows
//! tiled to 64), for the bundled models and every model of `models/zoo/`.
//! `bench/zoo_vs_onnxruntime.sh` runs this next to onnxruntime and writes
//! the ratio table into bench/README.md.
//!
//! Run: `cargo bench -p bench --bench models [-- FILTER]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serve::model::{FeatureMatrix, LoadedModel, Manifest, TestSet};

const BATCH: usize = 64;

/// (name, model.onnx, test.csv) for the bundled models and the zoo.
fn models() -> Vec<(String, PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut found = Vec::new();
    for name in ["iris", "wine", "digits"] {
        let dir = root.join(name);
        found.push((
            name.to_string(),
            dir.join("1/model.onnx"),
            dir.join("test.csv"),
        ));
    }
    let mut zoo: Vec<PathBuf> = std::fs::read_dir(root.join("zoo"))
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    zoo.sort();
    for dir in zoo.into_iter().filter(|d| d.join("1/model.onnx").is_file()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        found.push((name, dir.join("1/model.onnx"), dir.join("test.csv")));
    }
    found
}

fn load(name: &str, path: &Path) -> LoadedModel {
    LoadedModel::load(name, 1, path, Arc::new(Manifest::default()))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn benches(c: &mut Criterion) {
    for (name, path, test_csv) in models() {
        let rows = TestSet::read(&test_csv).unwrap().rows;

        let mut group = c.benchmark_group("load");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(1));
        group.bench_function(&name, |b| b.iter(|| load(&name, &path)));
        group.finish();

        let model = load(&name, &path);
        let mut group = c.benchmark_group("batch1");
        group.throughput(Throughput::Elements(1));
        let mut next = 0;
        group.bench_function(&name, |b| {
            b.iter(|| {
                let row = &rows[next % rows.len()];
                next += 1;
                let features = FeatureMatrix::from_values(&model.signature, row, "bench").unwrap();
                model.predict(features).unwrap()
            })
        });
        group.finish();

        let tiled: Vec<f64> = rows.iter().cycle().take(BATCH).flatten().copied().collect();
        let mut group = c.benchmark_group("batch64");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &tiled, |b, tiled| {
            b.iter(|| {
                let features =
                    FeatureMatrix::from_values(&model.signature, tiled, "bench").unwrap();
                model.predict(features).unwrap()
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! { name = models_bench; config = config(); targets = benches }
criterion_main!(models_bench);
