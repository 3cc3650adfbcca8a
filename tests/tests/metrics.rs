//! Metrics: conmond exports them with its spans to the same OTLP endpoint, with the same
//! resource, at the configured interval, and exemplars point at the spans they were recorded in.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use testkit::k8s;
use testkit::otlp::{self, MetricValue, Receiver};
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4771";

/// A histogram point: count, per-bucket counts, exemplars (trace and span IDs).
type Histogram = (u64, Vec<u64>, Vec<(String, String)>);

/// The latest histogram point of `name` with `attributes`.
fn histogram(receiver: &Receiver, name: &str, attributes: &[(&str, &str)]) -> Option<Histogram> {
    match receiver.latest_metric(name, attributes)?.value {
        MetricValue::Histogram {
            count,
            bucket_counts,
            exemplars,
            ..
        } => Some((count, bucket_counts, exemplars)),
        _ => None,
    }
}

fn sum(receiver: &Receiver, name: &str, attributes: &[(&str, &str)]) -> Option<f64> {
    match receiver.latest_metric(name, attributes)?.value {
        MetricValue::Sum(value) => Some(value),
        _ => None,
    }
}

#[test]
fn exec_syncs_containers_and_rpcs_arrive_as_metrics_tied_to_traces() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let pod = Pod::start_traced(&receiver.endpoint(), &["--metrics-interval-ms", "200"])?;
        let client = pod.client().await?;
        client.set_metadata(BTreeMap::from([(
            "traceparent".to_owned(),
            format!("00-{TRACE}-00f067aa0ba902b7-01"),
        )]));
        let id = unique_id("metrics");
        let request = pod.create_request(&id, pod.bundle(&id, &["sleep", "1000"])?);
        pod.start_container(&client, &request).await?;
        let exiting = unique_id("metrics-exit");
        let request = pod.create_request(&exiting, pod.bundle(&exiting, &["sh", "-c", "exit 4"])?);
        pod.start_container(&client, &request).await?;

        // A container OOM-killed under a 16 MiB limit, and a 1 MiB burst of 32-byte lines.
        let limit = 16 << 20;
        let bundle = pod.bundle_with(
            "metrics-oom",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
            |config| {
                config["linux"]["resources"]["memory"] =
                    serde_json::json!({"limit": limit, "swap": limit});
            },
        )?;
        pod.start_container(&client, &pod.create_request("metrics-oom", bundle))
            .await?;
        let burst = "yes 0123456789abcdef0123456789abcde | head -c 1048576";
        let bundle = pod.bundle("metrics-burst", &["sh", "-c", burst])?;
        pod.start_container(&client, &pod.create_request("metrics-burst", bundle))
            .await?;
        // One streaming session.
        let url = client
            .serve_exec(&ServeExec {
                id: id.clone(),
                command: vec!["true".into()],
                stdout: true,
                cgroup_manager: CgroupManager::Cgroupfs,
                ..ServeExec::default()
            })
            .await?;
        k8s::connect(&url, "v5.channel.k8s.io")
            .await?
            .receive_to_end()
            .await?;

        // 10 exec-syncs: 8 succeed, one exits non-zero, one reaches its deadline.
        for _ in 0..8 {
            client.exec_sync(&exec_request(&id, &["true"])).await?;
        }
        client.exec_sync(&exec_request(&id, &["false"])).await?;
        let mut slow = exec_request(&id, &["sleep", "10"]);
        slow.timeout = Some(Duration::from_secs(1));
        assert!(client.exec_sync(&slow).await?.timed_out);

        let outcomes = [("ok", 8), ("non_zero", 1), ("timeout", 1)];
        wait_for("exec-sync metrics", WAIT, || {
            let done = outcomes.iter().all(|(outcome, count)| {
                histogram(
                    &receiver,
                    "conmond.exec_sync.duration",
                    &[("outcome", outcome)],
                )
                .is_some_and(|(n, _, _)| n == *count)
            }) && [("non_zero", 1.0), ("oom", 1.0), ("zero", 1.0)].iter().all(
                |(class, n)| {
                    sum(
                        &receiver,
                        "conmond.containers.exited",
                        &[("exit.class", class)],
                    ) == Some(*n)
                },
            ) && sum(&receiver, "conmond.log.bytes", &[("stream", "stdout")])
                == Some(1048576.0);
            done.then_some(())
        })
        .await?;
        for (outcome, count) in outcomes {
            let (_, buckets, _) = histogram(
                &receiver,
                "conmond.exec_sync.duration",
                &[("outcome", outcome)],
            )
            .unwrap();
            assert_eq!(
                buckets.iter().sum::<u64>(),
                count,
                "{outcome}: bucket totals"
            );
        }
        // The timed-out exec lasted about its 1 s deadline: in the (1, 2.5] s bucket.
        let (_, buckets, _) = histogram(
            &receiver,
            "conmond.exec_sync.duration",
            &[("outcome", "timeout")],
        )
        .unwrap();
        assert_eq!(buckets[10], 1, "{buckets:?}");
        assert_eq!(sum(&receiver, "conmond.exec_sync.timeouts", &[]), Some(1.0));
        assert_eq!(sum(&receiver, "conmond.containers.created", &[]), Some(4.0));
        assert_eq!(sum(&receiver, "conmond.oom_kills", &[]), Some(1.0));
        assert_eq!(
            sum(&receiver, "conmond.log.lines", &[("stream", "stdout")]),
            Some(32768.0)
        );
        assert_eq!(
            sum(&receiver, "conmond.log.dropped", &[]),
            None,
            "nothing dropped"
        );
        let session = [
            ("streaming.kind", "exec"),
            ("streaming.transport", "websocket"),
        ];
        assert_eq!(
            sum(&receiver, "conmond.streaming.sessions", &session),
            Some(1.0)
        );
        assert_eq!(
            sum(&receiver, "conmond.streaming.sessions.active", &session),
            Some(0.0)
        );
        assert_eq!(
            sum(&receiver, "otel.exporter.dropped", &[("signal", "spans")]),
            Some(0.0)
        );
        let (calls, _, exemplars) = histogram(
            &receiver,
            "rpc.server.call.duration",
            &[("rpc.method", "execSyncContainer"), ("outcome", "ok")],
        )
        .unwrap();
        assert_eq!(calls, 10);

        // An exemplar points at a span that arrived, in the caller's trace.
        let (trace, span) = exemplars.first().cloned().expect("an exemplar");
        assert_eq!(trace, TRACE);
        let spans = wait_for("the exemplar's span", WAIT, || {
            let spans = receiver.spans();
            spans.iter().any(|s| s.span_id == span).then_some(spans)
        })
        .await?;
        let rpc = spans.iter().find(|s| s.span_id == span).unwrap();
        assert_eq!(rpc.name, "Conmon/execSyncContainer");

        // Same resource as the spans; the process gauges are there.
        let point = receiver
            .latest_metric("conmond.exec_sync.duration", &[])
            .unwrap();
        assert_eq!(point.resource, rpc.resource);
        for gauge in [
            "process.memory.usage",
            "process.open_file_descriptor.count",
            "conmond.tasks",
        ] {
            let value = receiver.latest_metric(gauge, &[]).map(|p| p.value);
            assert!(
                matches!(value, Some(MetricValue::Gauge(v)) if v > 0.0),
                "{gauge}: {value:?}"
            );
        }
        Ok(())
    })
}

#[test]
fn metrics_can_be_turned_off_and_a_last_export_comes_at_shutdown() -> Result<()> {
    run_local(async {
        let receiver = Receiver::start(otlp::free_addr()?).await?;
        let off = Pod::start_traced(
            &receiver.endpoint(),
            &["--disable-metrics", "--metrics-interval-ms", "100"],
        )?;
        off.client().await?.version(false).await?;
        // A minute-long interval: only the export at shutdown brings the call.
        let on = Pod::start_traced(&receiver.endpoint(), &[])?;
        on.client().await?.version(false).await?;
        on.terminate(Duration::from_secs(10)).await?;
        off.terminate(Duration::from_secs(10)).await?;
        let calls = histogram(
            &receiver,
            "rpc.server.call.duration",
            &[("rpc.method", "version"), ("outcome", "ok")],
        );
        assert_eq!(
            calls.map(|(n, _, _)| n),
            Some(1),
            "only the pod with metrics on reports"
        );
        assert!(
            receiver.spans().iter().any(|s| s.name == "Conmon/version"),
            "spans flow either way"
        );
        Ok(())
    })
}
