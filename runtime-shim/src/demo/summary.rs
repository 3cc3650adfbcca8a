//! The demo's metrics summary: a few lines from what the embedded receiver got from both
//! services (containers, exec-sync latency, log bytes, runtime-shim's operations).

use std::collections::BTreeMap;

use conmon_telemetry::receiver::{MetricPoint, MetricValue};

/// The latest point of each series (service, name, attributes): cumulative points, so the
/// latest is the total.
fn latest(points: &[MetricPoint]) -> Vec<&MetricPoint> {
    let mut series = BTreeMap::new();
    for point in points {
        series.insert((point.service(), &point.name, &point.attributes), point);
    }
    series.into_values().collect()
}

/// Sums of a counter's points of `service`, by the value of attribute `by`.
fn sums_by<'a>(
    points: &[&'a MetricPoint],
    service: &str,
    name: &str,
    by: &str,
) -> BTreeMap<&'a str, f64> {
    let mut sums = BTreeMap::new();
    for point in points.iter().filter(|p| is(p, service, name)) {
        if let MetricValue::Sum(value) = point.value {
            let key = point.attributes.get(by).map_or("", String::as_str);
            *sums.entry(key).or_insert(0.0) += value;
        }
    }
    sums
}

fn is(point: &MetricPoint, service: &str, name: &str) -> bool {
    point.name == name && point.service() == service
}

/// A histogram's points of `service` merged: count, sum, and bucket counts over the bounds.
#[derive(Debug, Default, PartialEq)]
struct Merged {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
    bounds: Vec<f64>,
}

impl Merged {
    fn of(points: &[&MetricPoint], service: &str, name: &str) -> Self {
        let mut merged = Self::default();
        for point in points.iter().filter(|p| is(p, service, name)) {
            if let MetricValue::Histogram {
                count,
                sum,
                bucket_counts,
                bounds,
                ..
            } = &point.value
            {
                merged.count += count;
                merged.sum += sum;
                merged.buckets.resize(bucket_counts.len(), 0);
                for (total, n) in merged.buckets.iter_mut().zip(bucket_counts) {
                    *total += n;
                }
                merged.bounds.clone_from(bounds);
            }
        }
        merged
    }

    /// The upper bound of the bucket holding the median, or `None` past the last bound.
    fn median_bound(&self) -> Option<f64> {
        let mut seen = 0;
        for (n, bound) in self.buckets.iter().zip(&self.bounds) {
            seen += n;
            if seen * 2 >= self.count {
                return Some(*bound);
            }
        }
        None
    }

    /// "N, mean X ms, p50 ≤ Y ms", or "none".
    fn describe(&self) -> String {
        if self.count == 0 {
            return "none".to_owned();
        }
        #[allow(clippy::cast_precision_loss, reason = "a count of calls")]
        let mean = self.sum / self.count as f64;
        let median = self.median_bound().map_or_else(
            || "above the last bucket".to_owned(),
            |b| format!("≤ {}", millis(b)),
        );
        format!("{}, mean {}, p50 {median}", self.count, millis(mean))
    }
}

fn millis(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1e3)
}

/// `value key` pairs joined, values as whole numbers, or "none".
fn listed(sums: &BTreeMap<&str, f64>, unit: &str) -> String {
    if sums.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = sums
        .iter()
        .map(|(k, v)| format!("{v:.0}{unit} {k}"))
        .collect();
    parts.join(", ")
}

/// The summary's lines, or none when no metrics arrived.
pub(super) fn lines(points: &[MetricPoint]) -> Vec<String> {
    let points = latest(points);
    if points.is_empty() {
        return Vec::new();
    }
    let from = |service: &str| points.iter().any(|p| p.service() == service);
    let mut lines = vec!["metrics:".to_owned()];
    if from("conmond") {
        let created = sums_by(&points, "conmond", "conmond.containers.created", "");
        let exited = sums_by(
            &points,
            "conmond",
            "conmond.containers.exited",
            "exit.class",
        );
        let exec = Merged::of(&points, "conmond", "conmond.exec_sync.duration");
        let log_bytes = sums_by(&points, "conmond", "conmond.log.bytes", "stream");
        lines.extend([
            format!(
                "  conmond       containers: {:.0} created, exited {}",
                created.values().sum::<f64>(),
                listed(&exited, "")
            ),
            format!("  conmond       exec-sync: {}", exec.describe()),
            format!("  conmond       log: {}", listed(&log_bytes, " B")),
        ]);
    } else {
        lines.push("  conmond       (no metrics received)".to_owned());
    }
    if from("runtime-shim") {
        let operations = Merged::of(&points, "runtime-shim", "runtime_shim.operation.duration");
        let rpcs = Merged::of(&points, "runtime-shim", "rpc.client.call.duration");
        lines.extend([
            format!("  runtime-shim  operations: {}", operations.describe()),
            format!("  runtime-shim  RPCs to conmond: {}", rpcs.describe()),
        ]);
    } else {
        lines.push("  runtime-shim  (no metrics received)".to_owned());
    }
    lines
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
