//! Model-level micro-benchmarks: load + optimize time, and scoring at batch 1
//! and 64 for every bundled model (no HTTP). Run: `cargo bench -p bench`.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serve::model::{FeatureMatrix, LoadedModel, Manifest};

const MODELS: [&str; 3] = ["iris", "wine", "digits"];

fn model_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .join("1/model.onnx")
}

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(name, 1, &model_path(name), Arc::new(Manifest::default()))
        .expect("model loads")
}

fn load_and_optimize(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    for name in MODELS {
        group.bench_function(name, |b| b.iter(|| load(name)));
    }
    group.finish();
}

fn predict(c: &mut Criterion) {
    let mut group = c.benchmark_group("predict");
    for name in MODELS {
        let model = load(name);
        for rows in [1usize, 64] {
            let values: Vec<f64> = (0..rows * model.signature.features)
                .map(|i| (i % 7) as f64 * 0.5)
                .collect();
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &values, |b, values| {
                b.iter(|| {
                    let features =
                        FeatureMatrix::from_values(&model.signature, values, "bench").unwrap();
                    model.predict(features).unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, load_and_optimize, predict);
criterion_main!(benches);
