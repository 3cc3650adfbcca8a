//! Descriptors handed over on the fd socket: into a container (`additionalFds`) or held for
//! its life (`leakFds`).

use std::io::Read as _;
use std::os::fd::{AsFd as _, OwnedFd};

use anyhow::{Result, ensure};
use runtime_shim::fd_socket::RemoteFds;
use testkit::*;

use crate::{WAIT, run_to_exit};

/// The `/proc/<pid>/fd` link target of this process's `fd` (`pipe:[…]`, a path, …).
fn target(fd: &impl std::os::fd::AsRawFd) -> Result<std::path::PathBuf> {
    Ok(std::fs::read_link(format!(
        "/proc/self/fd/{}",
        fd.as_raw_fd()
    ))?)
}

#[test]
fn passed_fds_reach_the_container_at_3_and_up_and_leave_the_monitor() -> Result<()> {
    with_pod(async |pod, client| {
        let path = client.start_fd_socket().await?;
        ensure!(path == pod.runtime_dir.join("conmon-fd.sock"), "{path:?}");
        ensure!(client.start_fd_socket().await? == path, "a second socket");
        let written = pod.path("written-by-container");
        let output = std::fs::File::create(&written)?;
        let given = pod.path("read-by-container");
        std::fs::write(&given, "given\n")?;
        let input = std::fs::File::open(&given)?;
        let (mut held_read, held_write) = std::io::pipe()?;
        let held_target = target(&held_write)?;

        let mut remote = RemoteFds::connect(&path)?;
        let slots = remote.send(&[output.as_fd(), input.as_fd()])?;
        let leak = remote.send(&[held_write.as_fd()])?;
        ensure!(slots == [1, 2] && leak == [3], "slots {slots:?} {leak:?}");
        drop((output, input, held_write));

        let script = "echo to-fd-3 >&3; cat <&4; exec sleep 1000";
        let bundle = pod.bundle("fds", &["sh", "-c", script])?;
        let log = pod.path("fds.log");
        let mut request = pod.create_request("fds", bundle);
        request.log_drivers = log_to(LogFormat::Cri, &log, 0);
        request.additional_fds = slots;
        request.leak_fds = leak;
        let exit_path = request.exit_paths[0].clone();
        let pid = pod.start_container(client, &request).await?;
        wait_for_text(&log, "given", WAIT).await?;

        // Exactly stdio and what it was given, at 3 and 4.
        let fd_dir = format!("/proc/{pid}/fd");
        let mut fds: Vec<String> = std::fs::read_dir(&fd_dir)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        fds.sort();
        ensure!(fds == ["0", "1", "2", "3", "4"], "{fds:?}");
        ensure!(
            std::fs::read_link(format!("{fd_dir}/3"))? == written,
            "fd 3"
        );
        ensure!(std::fs::read_link(format!("{fd_dir}/4"))? == given, "fd 4");
        // The monitor closed the container's descriptors and holds the leaked one.
        let held = pod.fd_targets()?;
        ensure!(
            !held.contains(&written) && !held.contains(&given),
            "{held:?}"
        );
        ensure!(held.contains(&held_target), "leaked fd not held: {held:?}");
        pod.runc(&["kill", "fds", "KILL"])?;
        ensure!(
            wait_for_file(&exit_path, WAIT).await? == "137",
            "container exit"
        );
        let text = String::from_utf8(cri_stream(&std::fs::read(&log)?, "stdout")?)?;
        ensure!(text == "given\n", "{text:?}");
        ensure!(std::fs::read_to_string(&written)? == "to-fd-3\n", "fd 3");
        // Once the container exited, the monitor let the leaked descriptor go: end of file.
        let reader = std::thread::spawn(move || held_read.read(&mut [0u8; 1]));
        wait_for("the leaked pipe to close", WAIT, || {
            reader.is_finished().then_some(())
        })
        .await?;
        ensure!(matches!(reader.join(), Ok(Ok(0))), "leaked pipe not at EOF");
        ensure!(
            !pod.fd_targets()?.contains(&held_target),
            "leaked fd still held"
        );
        Ok(())
    })
}

#[test]
fn bad_slots_and_requests_are_refused_by_name() -> Result<()> {
    with_pod(async |pod, client| {
        let path = client.start_fd_socket().await?;
        let mut remote = RemoteFds::connect(&path)?;
        let file: OwnedFd = std::fs::File::open("/dev/null")?.into();
        let slots = remote.send(&[file.as_fd()])?;

        // A slot that holds nothing fails the create, and takes nothing.
        let bundle = pod.bundle("bad", &["true"])?;
        let mut request = pod.create_request("bad", bundle.clone());
        request.additional_fds = vec![slots[0], 99];
        let err = error_text(client.create_container(&request).await);
        ensure!(err.contains("no file descriptor in slot 99"), "{err}");
        ensure!(pod.runc_containers()?.is_empty(), "container created");

        // The slot is still there for a good request.
        request.additional_fds = slots;
        ensure!(
            run_to_exit(pod, client, request).await? == "0",
            "good request"
        );

        // A malformed message gets an answer with the reason, as conmon-rs's client reads it.
        let raw = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
        raw.connect(&socket2::SockAddr::unix(&path)?)?;
        raw.send(&[1, 2, 3])?;
        let mut answer = [0u8; 128];
        let len = (&raw).read(&mut answer)?;
        ensure!(
            answer[..4] == [0xff; 4],
            "error marker: {:x?}",
            &answer[..len]
        );
        let reason = String::from_utf8_lossy(&answer[8..len]);
        ensure!(
            reason.contains("a request is 8 bytes, this one was 3"),
            "{reason}"
        );

        // Sending after the monitor closed what a connection passed still works.
        remote.close_unused()?;
        let again = remote.send(&[file.as_fd()]);
        ensure!(matches!(again, Ok(ref s) if s.len() == 1), "{again:?}");
        ensure!(pod.daemon_alive(), "monitor died");
        Ok(())
    })
}
