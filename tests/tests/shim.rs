//! runtime-shim's engine side against real conmond and runc: one monitor per pod, reuse,
//! shutdown, a `Send + Clone` handle, typed errors.

use std::time::Duration;

use anyhow::Result;
use runtime_shim::error::ShimError;
use runtime_shim::handle::MonitorHandle;
use runtime_shim::monitor;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn concurrent_ensures_for_one_pod_start_one_monitor() -> Result<()> {
    let pod = ShimPod::new()?;
    let results: Vec<(u32, bool)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    multi_thread().block_on(async {
                        let monitor = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
                        Ok::<_, ShimError>((monitor.pid, monitor.spawned))
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker").expect("ensure"))
            .collect()
    });
    assert_eq!(
        results[0].0, results[1].0,
        "both callers got the same monitor"
    );
    assert_eq!(
        results.iter().filter(|(_, spawned)| *spawned).count(),
        1,
        "{results:?}"
    );
    assert_eq!(pod.monitors(), [results[0].0]);
    Ok(())
}

#[test]
fn a_running_monitor_is_reused_and_stale_files_are_replaced() -> Result<()> {
    let pod = ShimPod::new()?;
    std::fs::create_dir_all(&pod.run_dir)?;
    // Leftovers of a monitor that died: a socket path nobody listens on and an old pidfile.
    std::fs::write(pod.run_dir.join("conmon.sock"), "")?;
    std::fs::write(pod.run_dir.join("pidfile"), "999999")?;
    multi_thread().block_on(async {
        let first = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
        assert!(first.spawned);
        assert_eq!(first.handle.version(false).await?.process_id, first.pid);
        drop(first.handle);
        // As a restarted engine would: nothing in memory, only the run directory.
        let again = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
        assert!(!again.spawned);
        assert_eq!(again.pid, first.pid);
        assert_eq!(pod.monitors(), [first.pid]);
        Ok(())
    })
}

#[test]
fn shutdown_stops_the_monitor_and_its_containers() -> Result<()> {
    let pod = ShimPod::new()?;
    let bundle = busybox_bundle(&pod.dir.path().join("bundle"), &["sleep", "1000"], |_| {})?;
    multi_thread().block_on(async {
        let monitor = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
        let exit = pod.dir.path().join("ctr.exit");
        let spec = CreateContainer {
            id: unique_id("shim"),
            bundle,
            exit_paths: vec![exit.clone()],
            cgroup_manager: CgroupManager::Cgroupfs,
            ..CreateContainer::default()
        };
        monitor.handle.create_container(spec).await?;
        drop(monitor.handle);
        monitor::shutdown_monitor(&pod.run_dir).await?;
        assert!(pod.monitors().is_empty(), "monitor still running");
        assert!(!monitor::socket_path(&pod.run_dir).exists());
        assert_eq!(wait_for_file(&exit, WAIT).await?, "137");
        // A pod whose monitor is gone shuts down trivially.
        monitor::shutdown_monitor(&pod.run_dir).await?;
        Ok(())
    })
}

#[test]
fn the_handle_is_shared_across_threads() -> Result<()> {
    let pod = ShimPod::new()?;
    let bundle = busybox_bundle(&pod.dir.path().join("bundle"), &["sleep", "1000"], |_| {})?;
    multi_thread().block_on(async {
        let monitor = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
        let id = unique_id("shared");
        let spec = CreateContainer {
            id: id.clone(),
            bundle,
            cgroup_manager: CgroupManager::Cgroupfs,
            ..CreateContainer::default()
        };
        monitor.handle.create_container(spec).await?;
        let status = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&pod.runc_root)
            .args(["start", &id])
            .status()?;
        assert!(status.success());
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let handle: MonitorHandle = monitor.handle.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let exec = ExecSync {
                        id,
                        command: vec!["echo".into(), format!("task-{i}")],
                        cgroup_manager: CgroupManager::Cgroupfs,
                        ..ExecSync::default()
                    };
                    handle.exec_sync(exec).await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let output = task.await??;
            assert_eq!(output.stdout, format!("task-{i}\n").into_bytes());
        }
        Ok(())
    })
}

#[test]
fn errors_say_which_step_failed() -> Result<()> {
    let pod = ShimPod::new()?;
    multi_thread().block_on(async {
        let err = MonitorHandle::connect(&pod.run_dir.join("nothing.sock"))
            .await
            .unwrap_err();
        assert!(matches!(err, ShimError::Connect { .. }), "{err:?}");

        let mut bad = pod.spec();
        bad.runtime = "/nonexistent/carrier-pigeon".into();
        let err = monitor::ensure_monitor(&bad, &pod.run_dir)
            .await
            .unwrap_err();
        assert!(matches!(err, ShimError::Spawn { .. }), "{err:?}");
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");

        let monitor = monitor::ensure_monitor(&pod.spec(), &pod.run_dir).await?;
        let exec = ExecSync {
            id: "ghost".into(),
            command: vec!["true".into()],
            ..ExecSync::default()
        };
        let err = monitor.handle.exec_sync(exec).await.unwrap_err();
        let ShimError::Remote {
            message,
            unimplemented: false,
        } = &err
        else {
            panic!("expected a remote error, got {err:?}");
        };
        assert!(message.contains("container 'ghost' not found"), "{message}");

        let exec = runtime_shim::client::ServeExec {
            id: "ghost".into(),
            command: vec!["true".into()],
            ..Default::default()
        };
        let err = monitor.handle.serve_exec(exec).await.unwrap_err();
        assert!(
            matches!(&err, ShimError::Remote { message, unimplemented: false } if message.contains("container 'ghost' not found")),
            "{err:?}"
        );

        // The fd socket sits in the monitor's run directory.
        let socket = monitor.handle.start_fd_socket().await?;
        assert_eq!(socket.file_name(), Some("conmon-fd.sock".as_ref()), "{socket:?}");
        Ok(())
    })
}
