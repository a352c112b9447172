//! `serve report`: per model version, how many documents, how many failed,
//! latency percentiles and the label distribution, as a text table and an
//! SVG chart (label distribution, latency over time). Aggregated here, not
//! in the store: the queries stay plain enough for any Cosmos DB account
//! (and for the test server, which has no cross-partition aggregates).

use std::collections::BTreeMap;
use std::fmt::Write;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Document;

/// Latency-over-time buckets per chart at most.
const TIME_BUCKETS: usize = 60;

/// One model version's telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub model: String,
    pub version: String,
    /// Documents: scored rows plus failed requests.
    pub count: usize,
    pub errors: usize,
    /// Request latency in ms at the 50th, 90th and 99th percentile, over
    /// documents (a request's rows each count).
    pub latency_ms: [f64; 3],
    /// Label → rows.
    pub labels: BTreeMap<String, usize>,
    /// Per time bucket: its start (Unix seconds), p50 and p99 latency in ms.
    pub latency_over_time: Vec<(f64, f64, f64)>,
}

impl Summary {
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.count.max(1) as f64
    }
}

/// Summaries per model version, in name and version order.
pub fn summarize(documents: &[Document]) -> Vec<Summary> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Document>> = BTreeMap::new();
    for document in documents {
        groups
            .entry((&document.model, &document.version))
            .or_default()
            .push(document);
    }
    groups
        .into_iter()
        .map(|((model, version), documents)| {
            let mut labels = BTreeMap::new();
            for label in documents.iter().filter_map(|d| d.label.as_ref()) {
                let text = match label {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *labels.entry(text).or_insert(0) += 1;
            }
            let latencies: Vec<f64> = documents.iter().map(|d| d.latency_ms).collect();
            Summary {
                model: model.to_string(),
                version: version.to_string(),
                count: documents.len(),
                errors: documents.iter().filter(|d| d.outcome != "ok").count(),
                latency_ms: percentiles(latencies),
                labels,
                latency_over_time: over_time(&documents),
            }
        })
        .collect()
}

/// p50, p90 and p99 by nearest rank.
fn percentiles(mut values: Vec<f64>) -> [f64; 3] {
    if values.is_empty() {
        return [0.0; 3];
    }
    values.sort_by(f64::total_cmp);
    [50.0, 90.0, 99.0].map(|p| {
        let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    })
}

fn unix_seconds(timestamp: &str) -> Option<f64> {
    let at = OffsetDateTime::parse(timestamp, &Rfc3339).ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

fn over_time(documents: &[&Document]) -> Vec<(f64, f64, f64)> {
    let points: Vec<(f64, f64)> = documents
        .iter()
        .filter_map(|d| Some((unix_seconds(&d.timestamp)?, d.latency_ms)))
        .collect();
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.0).reduce(f64::min),
        points.iter().map(|p| p.0).reduce(f64::max),
    ) else {
        return Vec::new();
    };
    // At least a second per bucket.
    let width = ((last - first) / TIME_BUCKETS as f64).max(1.0);
    let mut buckets: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (at, latency) in points {
        let index = (((at - first) / width) as usize).min(TIME_BUCKETS - 1);
        buckets.entry(index).or_default().push(latency);
    }
    buckets
        .into_iter()
        .map(|(index, latencies)| {
            let [p50, _, p99] = percentiles(latencies);
            (first + index as f64 * width, p50, p99)
        })
        .collect()
}

/// The summaries as a text table, labels after each version's line.
pub fn text(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>7} {:>9} {:>8} {:>10} {:>10} {:>10}",
        "model", "version", "count", "errors", "p50 ms", "p90 ms", "p99 ms"
    );
    for s in summaries {
        let [p50, p90, p99] = s.latency_ms;
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>9} {:>7.2}% {:>10.3} {:>10.3} {:>10.3}",
            s.model,
            s.version,
            s.count,
            s.error_rate() * 100.0,
            p50,
            p90,
            p99
        );
        let rows: usize = s.labels.values().sum();
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(label, n)| {
                format!(
                    "{label} {n} ({:.1}%)",
                    *n as f64 * 100.0 / rows.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(out, "  labels: {}", labels.join(", "));
    }
    if summaries.is_empty() {
        out.push_str("no telemetry documents\n");
    }
    out
}

const WIDTH: f64 = 960.0;
const SECTION: f64 = 260.0;
const COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// An SVG chart: per model version, the label distribution (bars) and the
/// latency over time (p50 and p99 lines).
pub fn svg(summaries: &[Summary]) -> String {
    let height = SECTION * summaries.len().max(1) as f64 + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (index, summary) in summaries.iter().enumerate() {
        let top = 20.0 + index as f64 * SECTION;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{top}" font-size="14" font-weight="bold">{} v{}: {} documents, {:.2}% errors</text>"#,
            escape(&summary.model),
            escape(&summary.version),
            summary.count,
            summary.error_rate() * 100.0
        );
        label_bars(&mut out, summary, 10.0, top + 20.0, 400.0, SECTION - 60.0);
        latency_lines(&mut out, summary, 480.0, top + 20.0, 460.0, SECTION - 60.0);
    }
    if summaries.is_empty() {
        let _ = writeln!(out, r#"<text x="10" y="20">no telemetry documents</text>"#);
    }
    out.push_str("</svg>\n");
    out
}

fn label_bars(out: &mut String, summary: &Summary, x: f64, y: f64, width: f64, height: f64) {
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{}">label distribution (rows)</text>"#,
        y + 10.0
    );
    let most = summary.labels.values().copied().max().unwrap_or(0).max(1) as f64;
    let bar = (height - 20.0) / summary.labels.len().max(1) as f64;
    let label_width = 120.0;
    for (i, (label, &n)) in summary.labels.iter().enumerate() {
        let row_y = y + 20.0 + i as f64 * bar;
        let length = (width - label_width - 60.0) * n as f64 / most;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text><rect x="{}" y="{:.1}" width="{length:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{n}</text>"#,
            x + label_width - 5.0,
            row_y + bar * 0.6,
            escape(label),
            x + label_width,
            row_y + bar * 0.15,
            bar * 0.7,
            COLORS[i % COLORS.len()],
            x + label_width + length + 4.0,
            row_y + bar * 0.6,
        );
    }
}

fn latency_lines(out: &mut String, summary: &Summary, x: f64, y: f64, width: f64, height: f64) {
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{}">latency over time (ms): <tspan fill="{}">p50</tspan>, <tspan fill="{}">p99</tspan></text>"#,
        y + 10.0,
        COLORS[0],
        COLORS[2]
    );
    let points = &summary.latency_over_time;
    let (plot_y, plot_height) = (y + 20.0, height - 40.0);
    let _ = writeln!(
        out,
        r##"<rect x="{x}" y="{plot_y}" width="{width}" height="{plot_height}" fill="none" stroke="#ccc"/>"##
    );
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return;
    };
    let span = (last.0 - first.0).max(1.0);
    let top = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1e-3);
    let at = |t: f64, v: f64| {
        (
            x + width * (t - first.0) / span,
            plot_y + plot_height * (1.0 - v / top),
        )
    };
    for (color, value) in [(COLORS[0], 1usize), (COLORS[2], 2)] {
        let line: Vec<String> = points
            .iter()
            .map(|p| {
                let (px, py) = at(p.0, if value == 1 { p.1 } else { p.2 });
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            line.join(" ")
        );
    }
    let seconds = last.0 - first.0;
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{:.1}">{top:.3} ms</text><text x="{x}" y="{:.1}">0 · {seconds:.0} s from {}</text>"#,
        plot_y - 2.0,
        plot_y + plot_height + 14.0,
        escape(&started_at(first.0)),
    );
}

fn started_at(unix_seconds: f64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Source;

    fn document(version: &str, second: u32, latency_ms: f64, label: Option<&str>) -> Document {
        Document {
            id: format!("{version}-{second}-{latency_ms}"),
            request_id: None,
            model: "iris".into(),
            version: version.into(),
            model_sha256: "00".into(),
            source: Source::Rest,
            timestamp: format!("2026-01-01T00:00:{second:02}.000000Z"),
            latency_ms,
            row: label.map(|_| 0),
            label: label.map(|l| serde_json::json!(l)),
            probabilities: None,
            outcome: if label.is_some() {
                "ok"
            } else {
                "invalid_input"
            }
            .into(),
            error: None,
            trace_id: None,
            lineage: Default::default(),
            inputs: None,
        }
    }

    #[test]
    fn summaries_count_errors_percentiles_and_labels_per_version() {
        let mut documents: Vec<Document> = (1..=100)
            .map(|i| {
                let label = if i % 4 == 0 { "virginica" } else { "setosa" };
                document("1", (i % 60) as u32, i as f64, Some(label))
            })
            .collect();
        documents.push(document("1", 5, 1000.0, None));
        documents.push(document("2", 0, 3.0, Some("setosa")));
        let summaries = summarize(&documents);
        assert_eq!(summaries.len(), 2);
        let v1 = &summaries[0];
        assert_eq!((v1.count, v1.errors), (101, 1));
        assert_eq!(v1.latency_ms, [51.0, 91.0, 100.0]);
        assert_eq!(v1.labels["setosa"], 75);
        assert_eq!(v1.labels["virginica"], 25);
        assert!(!v1.latency_over_time.is_empty());
        assert_eq!(summaries[1].count, 1);

        let table = text(&summaries);
        assert!(table.contains("virginica 25 (25.0%)"), "{table}");
        assert!(table.contains("0.99%"), "{table}");
        let chart = svg(&summaries);
        assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
        assert_eq!(chart.matches("<polyline").count(), 4);
        assert!(chart.contains(">virginica</text>"));
    }
}
