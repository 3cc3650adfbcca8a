//! Metrics of a service, exported over OTLP with its spans and logs (same endpoint, same
//! resource): counters, up-down counters and histograms recorded where things happen, and
//! gauges observed at export time. Points are cumulative (what Prometheus expects) and keyed by
//! a few static attributes (no container IDs), so memory stays bounded.
//!
//! No SDK: an instrument is a constant, recording takes one mutex and updates a map entry,
//! and nothing is recorded until [`enable`] (metrics export on). A histogram point recorded
//! inside a sampled span keeps the latest such measurement as an exemplar with the trace and
//! span IDs, so a backend can jump from a slow bucket to a trace.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, exemplar, metric, number_data_point,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Attribute pairs of a data point.
pub type Attributes<'a> = &'a [(&'static str, &'static str)];

/// Bucket bounds for durations in seconds, from 1 ms to 60 s.
pub const DURATION_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What an instrument aggregates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A monotonic sum.
    Counter,
    /// A sum that goes up and down (active sessions, say).
    UpDownCounter,
    /// A distribution over the given bucket bounds.
    Histogram(&'static [f64]),
}

/// A named instrument; declare them as constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instrument {
    /// Its name (semantic-convention style).
    pub name: &'static str,
    /// UCUM unit (`s`, `By`, `{container}`).
    pub unit: &'static str,
    /// What it counts.
    pub description: &'static str,
    /// How it aggregates.
    pub kind: Kind,
}

impl Instrument {
    /// A monotonic counter.
    pub const fn counter(
        name: &'static str,
        unit: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            unit,
            description,
            kind: Kind::Counter,
        }
    }

    /// A sum that goes up and down.
    pub const fn up_down(
        name: &'static str,
        unit: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            kind: Kind::UpDownCounter,
            ..Self::counter(name, unit, description)
        }
    }

    /// A histogram of durations in seconds ([`DURATION_BOUNDS`]).
    pub const fn seconds(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            unit: "s",
            description,
            kind: Kind::Histogram(DURATION_BOUNDS),
        }
    }

    /// Adds `value` (counters: only non-negative values count) to the point of `attributes`.
    pub fn add(&self, value: i64, attributes: Attributes<'_>) {
        if self.kind == Kind::Counter && value < 0 {
            return;
        }
        if let Some(registry) = REGISTRY.get() {
            let mut points = lock(&registry.points);
            let (_, point) = points
                .entry(key(self, attributes))
                .or_insert_with(|| (*self, Point::new(self.kind)));
            if let Point::Sum(sum) = point {
                *sum += value;
            }
        }
    }

    /// Records `value` in a histogram; inside a sampled span it becomes the point's exemplar.
    pub fn record(&self, value: f64, attributes: Attributes<'_>) {
        let Some(registry) = REGISTRY.get() else {
            return;
        };
        let exemplar = current_exemplar(value);
        let mut points = lock(&registry.points);
        let (_, point) = points
            .entry(key(self, attributes))
            .or_insert_with(|| (*self, Point::new(self.kind)));
        if let Point::Histogram(histogram) = point {
            histogram.record(value, exemplar);
        }
    }

    /// The OTLP metric this instrument's points go into.
    fn metric(&self, data: Option<metric::Data>) -> Metric {
        Metric {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            unit: self.unit.to_owned(),
            metadata: Vec::new(),
            data,
        }
    }
}

/// A point's key: the instrument's name and the sorted attributes.
type Key = (&'static str, Vec<(&'static str, &'static str)>);

fn key(instrument: &Instrument, attributes: Attributes<'_>) -> Key {
    let mut attributes = attributes.to_vec();
    attributes.sort_unstable();
    (instrument.name, attributes)
}

#[derive(Debug)]
enum Point {
    Sum(i64),
    Histogram(Buckets),
}

impl Point {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Counter | Kind::UpDownCounter => Self::Sum(0),
            Kind::Histogram(bounds) => Self::Histogram(Buckets {
                counts: vec![0; bounds.len() + 1],
                bounds,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                exemplar: None,
            }),
        }
    }
}

#[derive(Debug)]
struct Buckets {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    min: f64,
    max: f64,
    exemplar: Option<Exemplar>,
}

impl Buckets {
    fn record(&mut self, value: f64, exemplar: Option<Exemplar>) {
        // OTLP's buckets are upper-inclusive: bucket i holds (bounds[i-1], bounds[i]].
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket] += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if exemplar.is_some() {
            self.exemplar = exemplar;
        }
    }
}

/// The current span's IDs with `value`, if the span is sampled.
fn current_exemplar(value: f64) -> Option<Exemplar> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_sampled() {
        return None;
    }
    Some(Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: unix_nanos(SystemTime::now()),
        span_id: span_context.span_id().to_bytes().to_vec(),
        trace_id: span_context.trace_id().to_bytes().to_vec(),
        value: Some(exemplar::Value::AsDouble(value)),
    })
}

/// A gauge read at export time.
struct Observed {
    instrument: Instrument,
    read: Box<dyn Fn() -> Option<f64> + Send + Sync>,
}

struct Registry {
    start: SystemTime,
    points: Mutex<BTreeMap<Key, (Instrument, Point)>>,
    observed: Mutex<Vec<Observed>>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts recording (done by [`init`](crate::init) when metrics are exported).
pub(crate) fn enable() {
    REGISTRY.get_or_init(|| Registry {
        start: SystemTime::now(),
        points: Mutex::new(BTreeMap::new()),
        observed: Mutex::new(Vec::new()),
    });
}

/// Whether metrics are recorded.
pub fn enabled() -> bool {
    REGISTRY.get().is_some()
}

/// Registers a gauge whose value `read` gives at each export (`None`: no point this time).
/// `read` runs on the export thread.
pub fn observe(
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    read: impl Fn() -> Option<f64> + Send + Sync + 'static,
) {
    if let Some(registry) = REGISTRY.get() {
        let instrument = Instrument::up_down(name, unit, description);
        lock(&registry.observed).push(Observed {
            instrument,
            read: Box::new(read),
        });
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn attributes_of(pairs: &[(&'static str, &'static str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(key, value)| KeyValue {
            key: (*key).to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue((*value).to_owned())),
            }),
            ..KeyValue::default()
        })
        .collect()
}

/// Every metric as it stands, for export; empty when recording is off.
pub(crate) fn collect() -> Vec<Metric> {
    let Some(registry) = REGISTRY.get() else {
        return Vec::new();
    };
    let (start, now) = (unix_nanos(registry.start), unix_nanos(SystemTime::now()));
    let number = |attributes, value| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    };
    let mut metrics: BTreeMap<&'static str, Metric> = BTreeMap::new();
    for ((_, pairs), (instrument, point)) in lock(&registry.points).iter() {
        let metric = metrics
            .entry(instrument.name)
            .or_insert_with(|| instrument.metric(None));
        let attributes = attributes_of(pairs);
        match point {
            Point::Sum(sum) => {
                let data = metric.data.get_or_insert_with(|| {
                    metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: instrument.kind == Kind::Counter,
                    })
                });
                if let metric::Data::Sum(data) = data {
                    let value = number_data_point::Value::AsInt(*sum);
                    data.data_points.push(number(attributes, value));
                }
            }
            Point::Histogram(buckets) => {
                let count = buckets.counts.iter().sum();
                let data = metric.data.get_or_insert_with(|| {
                    metric::Data::Histogram(Histogram {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })
                });
                if let metric::Data::Histogram(data) = data {
                    data.data_points.push(HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count,
                        sum: Some(buckets.sum),
                        bucket_counts: buckets.counts.clone(),
                        explicit_bounds: buckets.bounds.to_vec(),
                        exemplars: buckets.exemplar.iter().cloned().collect(),
                        flags: 0,
                        min: (count > 0).then_some(buckets.min),
                        max: (count > 0).then_some(buckets.max),
                    });
                }
            }
        }
    }
    for observed in lock(&registry.observed).iter() {
        let Some(value) = (observed.read)() else {
            continue;
        };
        let point = number(Vec::new(), number_data_point::Value::AsDouble(value));
        let gauge = metric::Data::Gauge(Gauge {
            data_points: vec![point],
        });
        let instrument = &observed.instrument;
        metrics.insert(instrument.name, instrument.metric(Some(gauge)));
    }
    metrics.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics.iter().find(|m| m.name == name).expect(name)
    }

    #[test]
    fn points_aggregate_by_sorted_attributes_and_buckets_are_upper_inclusive() {
        enable();
        const REQUESTS: Instrument = Instrument::counter("test.requests", "{request}", "requests");
        const LATENCY: Instrument = Instrument {
            name: "test.latency",
            unit: "s",
            description: "latency",
            kind: Kind::Histogram(&[1.0, 2.0]),
        };
        REQUESTS.add(2, &[("a", "x"), ("b", "y")]);
        REQUESTS.add(3, &[("b", "y"), ("a", "x")]);
        REQUESTS.add(-1, &[("a", "x"), ("b", "y")]);
        for value in [0.5, 1.0, 1.5, 7.0] {
            LATENCY.record(value, &[]);
        }
        let metrics = collect();
        let Some(metric::Data::Sum(sum)) = &point(&metrics, "test.requests").data else {
            panic!("a sum");
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
        let Some(metric::Data::Histogram(histogram)) = &point(&metrics, "test.latency").data else {
            panic!("a histogram");
        };
        let data = &histogram.data_points[0];
        assert_eq!(data.bucket_counts, [2, 1, 1]);
        assert_eq!(
            (data.count, data.sum, data.min, data.max),
            (4, Some(10.0), Some(0.5), Some(7.0))
        );
        // Outside a sampled span: no exemplar.
        assert!(data.exemplars.is_empty());
    }

    #[test]
    fn gauges_are_read_at_collection() {
        enable();
        observe("test.gauge", "1", "a gauge", || Some(42.0));
        observe("test.absent", "1", "no value", || None);
        let metrics = collect();
        let Some(metric::Data::Gauge(gauge)) = &point(&metrics, "test.gauge").data else {
            panic!("a gauge");
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(42.0))
        );
        assert!(metrics.iter().all(|m| m.name != "test.absent"));
    }
}
