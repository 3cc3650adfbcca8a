//! OCI bundles with a busybox root filesystem, which `runtime-shim create` runs when given no
//! bundle (and the demo and tests use): the static busybox binary
//! (Debian's busybox-static) with a link per applet, and `runc spec`'s config with the given
//! command, no terminal and a writable root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ShimError;

/// Static busybox from Debian's busybox-static.
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// Creates a bundle at `dir` whose process runs `args`; `edit` may adjust the config.
///
/// # Errors
/// Missing busybox or runtime, or file system failures.
pub fn busybox_bundle(
    dir: &Path,
    runtime: &Path,
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<PathBuf, ShimError> {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).map_err(ShimError::io("create", &bin))?;
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(ShimError::io(
        "copy busybox (apt-get install busybox-static) from",
        Path::new(BUSYBOX),
    ))?;
    let applets = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(ShimError::io("run", Path::new(BUSYBOX)))?;
    for applet in String::from_utf8_lossy(&applets.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        let link = bin.join(applet);
        std::os::unix::fs::symlink("busybox", &link).map_err(ShimError::io("link", &link))?;
    }
    for sub in ["proc", "dev", "sys", "tmp", "etc"] {
        let path = dir.join("rootfs").join(sub);
        std::fs::create_dir_all(&path).map_err(ShimError::io("create", &path))?;
    }
    let status = Command::new(runtime)
        .arg("spec")
        .arg("--bundle")
        .arg(dir)
        .status()
        .map_err(ShimError::io("run", runtime))?;
    if !status.success() {
        return Err(ShimError::Runtime {
            action: "spec",
            id: dir.display().to_string(),
            status: status.to_string(),
            stderr: String::new(),
        });
    }
    let config_path = dir.join("config.json");
    let text = std::fs::read(&config_path).map_err(ShimError::io("read", &config_path))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|err| ShimError::Io {
            what: "parse",
            path: config_path.clone(),
            source: err.into(),
        })?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
    config["process"]["env"] = serde_json::json!(["PATH=/bin:/usr/bin:/sbin:/usr/sbin", "HOME=/"]);
    config["root"]["readonly"] = false.into();
    edit(&mut config);
    let text = serde_json::to_vec_pretty(&config).map_err(|err| ShimError::Io {
        what: "render",
        path: config_path.clone(),
        source: err.into(),
    })?;
    std::fs::write(&config_path, text).map_err(ShimError::io("write", &config_path))?;
    Ok(dir.to_owned())
}
