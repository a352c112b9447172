//! The telemetry writer's own work per document, without a store: encoding
//! a prediction into its JSON documents (what the writer thread does for
//! every request before any sink sees it), for a 1-row and a 64-row iris
//! request.
//!
//! Run: `cargo bench -p bench --bench telemetry`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serve::model::{LoadedModel, Manifest, Predictions};
use serve::telemetry::{Lineage, ModelFragments, Origin, Prediction};

fn iris() -> Arc<LoadedModel> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/iris");
    let manifest = Manifest::read_optional(&dir.join("model.toml")).unwrap();
    Arc::new(LoadedModel::load("iris", 1, &dir.join("1/model.onnx"), Arc::new(manifest)).unwrap())
}

/// A REST request's prediction of `rows` rows, as scoring hands it over.
fn prediction(model: &Arc<LoadedModel>, rows: usize) -> Prediction {
    let classes = model.signature.classes();
    Prediction {
        origin: Origin::Rest { request_id: None },
        model: model.clone(),
        traceparent: None,
        at: SystemTime::now(),
        latency: Duration::from_micros(126),
        outcome: Ok(Predictions {
            rows,
            classes,
            probabilities: (0..rows * classes).map(|i| (i % 7) as f32 / 7.0).collect(),
            label_indices: (0..rows).map(|row| row % classes).collect(),
            compute: Duration::from_micros(3),
        }),
        inputs: None,
    }
}

fn benches(c: &mut Criterion) {
    let model = iris();
    let deployment = Lineage {
        code_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        ..Lineage::default()
    };
    let fragments = ModelFragments::new(&model, &deployment);
    let mut group = c.benchmark_group("encode");
    for rows in [1, 64] {
        let prediction = prediction(&model, rows);
        let mut sequence = 0;
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &prediction, |b, p| {
            b.iter(|| {
                sequence += 1;
                p.encode("18ec838d6b7f9342-10a8", sequence, &fragments)
            })
        });
    }
    group.finish();
}

criterion_group!(telemetry, benches);
criterion_main!(telemetry);
