use std::collections::BTreeMap;

use conmon_telemetry::receiver::{MetricPoint, MetricValue};

use super::lines;

fn point(
    service: &str,
    name: &str,
    attributes: &[(&str, &str)],
    value: MetricValue,
) -> MetricPoint {
    MetricPoint {
        name: name.to_owned(),
        unit: String::new(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        resource: BTreeMap::from([("service.name".to_owned(), service.to_owned())]),
    }
}

fn histogram(count: u64, sum: f64, bucket_counts: &[u64]) -> MetricValue {
    MetricValue::Histogram {
        count,
        sum,
        bucket_counts: bucket_counts.to_vec(),
        bounds: vec![0.001, 0.01, 0.1],
        exemplars: Vec::new(),
    }
}

#[test]
fn latest_cumulative_points_are_summed_across_attributes() {
    let points = [
        // An earlier export of the same series: superseded.
        point(
            "conmond",
            "conmond.containers.created",
            &[],
            MetricValue::Sum(1.0),
        ),
        point(
            "conmond",
            "conmond.containers.created",
            &[],
            MetricValue::Sum(3.0),
        ),
        point(
            "conmond",
            "conmond.containers.exited",
            &[("exit.class", "zero")],
            MetricValue::Sum(2.0),
        ),
        point(
            "conmond",
            "conmond.containers.exited",
            &[("exit.class", "oom")],
            MetricValue::Sum(1.0),
        ),
        point(
            "conmond",
            "conmond.exec_sync.duration",
            &[("outcome", "ok")],
            histogram(3, 0.012, &[0, 3, 0, 0]),
        ),
        point(
            "conmond",
            "conmond.exec_sync.duration",
            &[("outcome", "timeout")],
            histogram(1, 1.0, &[0, 0, 0, 1]),
        ),
        point(
            "conmond",
            "conmond.log.bytes",
            &[("stream", "stdout")],
            MetricValue::Sum(24.0),
        ),
        point(
            "runtime-shim",
            "runtime_shim.operation.duration",
            &[("operation", "a")],
            histogram(2, 0.3, &[0, 0, 1, 1]),
        ),
        point(
            "runtime-shim",
            "rpc.client.call.duration",
            &[("rpc.method", "version")],
            histogram(1, 0.0005, &[1, 0, 0, 0]),
        ),
    ];
    assert_eq!(
        lines(&points),
        [
            "metrics:",
            "  conmond       containers: 3 created, exited 1 oom, 2 zero",
            "  conmond       exec-sync: 4, mean 253.0 ms, p50 ≤ 10.0 ms",
            "  conmond       log: 24 B stdout",
            "  runtime-shim  operations: 2, mean 150.0 ms, p50 ≤ 100.0 ms",
            "  runtime-shim  RPCs to conmond: 1, mean 0.5 ms, p50 ≤ 1.0 ms",
        ]
    );
}

#[test]
fn a_silent_service_and_empty_histograms_are_named() {
    assert!(lines(&[]).is_empty());
    let points = [point(
        "conmond",
        "conmond.containers.created",
        &[],
        MetricValue::Sum(1.0),
    )];
    assert_eq!(
        lines(&points),
        [
            "metrics:",
            "  conmond       containers: 1 created, exited none",
            "  conmond       exec-sync: none",
            "  conmond       log: none",
            "  runtime-shim  (no metrics received)",
        ]
    );
}

#[test]
fn a_median_past_the_last_bound_says_so() {
    let points = [point(
        "runtime-shim",
        "runtime_shim.operation.duration",
        &[("operation", "a")],
        histogram(1, 5.0, &[0, 0, 0, 1]),
    )];
    assert_eq!(
        lines(&points)[2],
        "  runtime-shim  operations: 1, mean 5000.0 ms, p50 above the last bucket"
    );
}
