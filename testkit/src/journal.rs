//! A private `systemd-journald` for one test, so the journald log drivers are tested against the
//! real thing without touching the host's journal (or its lack of one).
//!
//! journald runs in a mount namespace of its own (`unshare --mount`, private propagation) with a
//! tmpfs over `/run`: its sockets appear at the usual `/run/systemd/journal/…` only there, and
//! its journal files go to a test directory bound at `/run/log/journal`, which `journalctl
//! --directory` reads from outside. conmond reaches it by running in that namespace
//! ([`PrivateJournal::start_pod`] starts it through `nsenter`), so it finds journald where it
//! always looks. The host's `/run` is never written, so tests that check the host without
//! journald run alongside.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{Pod, require_privileged, wait_for};

/// The journald binary (Debian's `systemd` package).
pub const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// The journal reader (same package).
pub const JOURNALCTL: &str = "/usr/bin/journalctl";

/// How long journald may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// journald's settings: volatile storage only (never the host's `/var/log/journal`), at most
/// 16 MiB; nothing read from or forwarded to the host's kernel log, syslog, console or
/// terminals; the kernel's audit switch left as it is (Debian's default turns it off); no rate
/// limit.
const CONFIG: &str = "[Journal]\n\
    Storage=volatile\n\
    RuntimeMaxUse=16M\n\
    ReadKMsg=no\n\
    Audit=\n\
    ForwardToSyslog=no\n\
    ForwardToKMsg=no\n\
    ForwardToConsole=no\n\
    ForwardToWall=no\n\
    RateLimitIntervalSec=0\n";

/// Run by `sh` in the new mount namespace, then replaced by journald (same PID): `$1` is the
/// storage directory, `$2` the configuration, `$3` journald. journald must get no argument
/// (its first one names a journal namespace).
const SETUP: &str = r#"set -e
mount -t tmpfs -o mode=0755 journal-test /run
mkdir -p /run/log/journal /run/systemd/journald.conf.d
mount --bind "$1" /run/log/journal
cp "$2" /run/systemd/journald.conf.d/test.conf
exec "$3""#;

/// A journald of the test's own, stopped on drop.
#[derive(Debug)]
pub struct PrivateJournal {
    dir: tempfile::TempDir,
    journald: Child,
}

impl PrivateJournal {
    /// Starts journald in a new mount namespace and waits until its native socket is there.
    pub fn start() -> Result<Self> {
        require_privileged();
        for tool in [JOURNALD, JOURNALCTL] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: apt-get install systemd"
            );
        }
        let dir = tempfile::Builder::new().prefix("journal-it").tempdir()?;
        let storage = dir.path().join("journal");
        std::fs::create_dir(&storage)?;
        let config = dir.path().join("journald.conf");
        std::fs::write(&config, CONFIG)?;
        let output = std::fs::File::create(dir.path().join("journald.out"))?;
        // `setpriv --pdeathsig` ends journald with the test thread even if drop never runs.
        let journald = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "unshare", "--mount"])
            .args(["--propagation", "private", "sh", "-c", SETUP, "setup"])
            .args([storage.as_os_str(), config.as_os_str(), JOURNALD.as_ref()])
            // journald's own messages go to its output file, not to the host's kernel log.
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("start journald with setpriv and unshare (util-linux)")?;
        let mut journal = Self { dir, journald };
        journal.wait_until_listening()?;
        Ok(journal)
    }

    /// Polls until journald (itself, not the setup before it) has bound its native socket.
    fn wait_until_listening(&mut self) -> Result<()> {
        let pid = self.journald.id();
        let socket = PathBuf::from(format!("/proc/{pid}/root/run/systemd/journal/socket"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.journald.try_wait()? {
                bail!("journald exited with {status}: {}", self.output());
            }
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe.ends_with("systemd-journald") && socket.exists() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "journald did not open {} within {START_TIMEOUT:?}: {}",
                    socket.display(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What journald and its setup wrote.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("journald.out")).unwrap_or_default()
    }

    /// journald's PID.
    pub fn pid(&self) -> u32 {
        self.journald.id()
    }

    /// Starts conmond (with `extra` flags) in journald's mount namespace, where journald's
    /// socket is at its usual path.
    pub fn start_pod(&self, extra: &[&str]) -> Result<Pod> {
        let mount = OsString::from(format!("--mount=/proc/{}/ns/mnt", self.pid()));
        let launcher = [OsStr::new("nsenter"), &mount, OsStr::new("--")];
        Pod::start_via(&launcher, None, extra)
    }

    /// The entries matching `matches` (`FIELD=value`, as `journalctl` takes them), oldest
    /// first, each a JSON object (`journalctl -o json --all`: a value that is not printable
    /// UTF-8 is an array of its bytes).
    pub fn entries(&self, matches: &[&str]) -> Result<Vec<Value>> {
        let output = Command::new(JOURNALCTL)
            .arg("--directory")
            .arg(self.dir.path().join("journal"))
            .args(["--output=json", "--all", "--no-pager", "--quiet"])
            .args(matches)
            .output()
            .context("run journalctl")?;
        if !output.status.success() {
            bail!(
                "journalctl {matches:?} failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
            .stdout
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).context("journalctl output is not JSON"))
            .collect()
    }

    /// Waits until at least `count` entries match `matches` and returns all that do.
    pub async fn wait_for_entries(
        &self,
        matches: &[&str],
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let mut last = Ok(Vec::new());
        let found = wait_for(
            &format!("{count} journal entries matching {matches:?}"),
            timeout,
            || {
                last = self.entries(matches);
                last.as_ref().ok().filter(|e| e.len() >= count).cloned()
            },
        )
        .await;
        match (found, last) {
            (Ok(entries), _) => Ok(entries),
            (Err(timeout), Ok(entries)) => Err(timeout.context(format!("found {entries:#?}"))),
            (Err(timeout), Err(journalctl)) => Err(journalctl.context(timeout)),
        }
    }
}

impl Drop for PrivateJournal {
    fn drop(&mut self) {
        let _ = self.journald.kill();
        let _ = self.journald.wait();
    }
}

/// The bytes of field `name` of a journal entry from [`PrivateJournal::entries`], if it has it.
pub fn field(entry: &Value, name: &str) -> Option<Vec<u8>> {
    match entry.get(name)? {
        Value::String(text) => Some(text.clone().into_bytes()),
        Value::Array(bytes) => bytes
            .iter()
            .map(|byte| byte.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => None,
    }
}

/// Field `name` as text, for fields that hold printable UTF-8.
pub fn text(entry: &Value, name: &str) -> Option<String> {
    entry.get(name)?.as_str().map(str::to_owned)
}
