//! runtime-shim's engine called as a library (no binary spawned): the operations an engine
//! embedding runtime-shim performs, with real conmond and runc.

use std::time::Duration;

use anyhow::Result;
use runtime_shim::cri_log::{self, Stream};
use runtime_shim::engine::{BundleSource, EngineError, Stdio};
use runtime_shim::runtime::ContainerStatus;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn command(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn create_start_exec_stop_remove_through_the_library() -> Result<()> {
    let env = ShimEnv::new("")?;
    run_multi_thread(async {
        let engine = env.engine()?;
        let script = "echo started; trap 'echo stopping; exit 0' TERM; sleep 1000 & wait";
        let bundle = BundleSource::Busybox(command(&["sh", "-c", script]));
        let pid = engine.create("p1", "c1", bundle, Stdio::default()).await?;
        assert!(pid > 1);
        let listed = engine.list(Some("p1")).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, Some(ContainerStatus::Created));

        engine.start("c1").await?;
        let result = engine
            .exec(
                "c1",
                Some(Duration::from_secs(10)),
                command(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            )
            .await?;
        assert_eq!(
            (result.exit_code, result.timed_out),
            (3, false),
            "{result:?}"
        );
        assert_eq!(
            (&result.stdout[..], &result.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        let timed_out = engine
            .exec(
                "c1",
                Some(Duration::from_secs(1)),
                command(&["sleep", "10"]),
            )
            .await?;
        assert!(timed_out.timed_out, "{timed_out:?}");

        wait_for("output in the log", WAIT, || {
            let log = engine.log("c1").ok()?;
            let stdout = cri_log::reassemble(&log, Some(Stream::Stdout)).ok()?;
            (stdout == b"started\n").then_some(())
        })
        .await?;
        assert_eq!(engine.stop("c1", Duration::from_secs(10)).await?, 0);
        let listed = engine.list(None).await?;
        assert_eq!(listed[0].status, Some(ContainerStatus::Stopped));
        assert_eq!(listed[0].exit_code, Some(0));
        let log = engine.log("c1")?;
        assert_eq!(
            cri_log::reassemble(&log, Some(Stream::Stdout))?,
            b"started\nstopping\n"
        );

        engine.remove("c1").await?;
        assert!(engine.list(None).await?.is_empty());
        assert!(env.runc_containers()?.is_empty());
        let pods = engine.pod_list().await?;
        assert_eq!(pods.len(), 1);
        assert!(pods[0].monitor_pid.is_some(), "{pods:?}");
        engine.pod_rm("p1").await?;
        assert!(engine.pod_list().await?.is_empty());
        Ok(())
    })
}

#[test]
fn engine_errors_name_what_was_wrong() -> Result<()> {
    let env = ShimEnv::new("")?;
    run_multi_thread(async {
        let engine = env.engine()?;
        let err = engine.start("ghost").await.unwrap_err();
        assert!(matches!(err, EngineError::NoContainer { .. }), "{err:?}");
        for bad in ["../x", "a/b", ""] {
            let err = engine.pod_rm(bad).await.unwrap_err();
            assert!(
                matches!(err, EngineError::InvalidName { what: "pod", .. }),
                "{err:?}"
            );
        }
        let sleeper = BundleSource::Busybox(Vec::new());
        engine
            .create("p1", "c1", sleeper.clone(), Stdio::default())
            .await?;
        let err = engine
            .create("p2", "c1", sleeper, Stdio::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "container 'c1' exists already");
        // A failed create leaves no directory behind.
        let missing = BundleSource::Path(env.dir().join("no-bundle"));
        let err = engine
            .create("p1", "c2", missing, Stdio::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-bundle"), "{err}");
        assert!(matches!(
            engine.start("c2").await,
            Err(EngineError::NoContainer { .. })
        ));
        engine.pod_rm("p1").await?;
        Ok(())
    })
}
