//! Writes `conmon/hot-functions.ld`, the linker script that places the functions conmond runs
//! next to each other, from what callgrind sees a profiling build run (`scripts/hot-functions`).
//!
//! Why: the kernel maps the cached pages of an executable around every page a process touches
//! (fault-around, 64 KiB), so code spread over the whole text makes an idle conmond map most of
//! it. With the functions it runs packed together it maps about what it runs.
//!
//! Usage: `CONMOND_BINARY=CONMOND hot_functions OUTPUT`, with `CONMOND` built by the
//! `profiling` profile (the release build with symbols); needs root, runc and valgrind.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use testkit::*;

/// A scripted run of conmond under callgrind.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// Start, a `version` call, idle for a moment, SIGTERM.
    Idle,
    /// Containers created, logging and exiting, exec-syncs (one timing out), a log reopened.
    Lifecycle,
}

/// One profiled run: the workload and whether trace export is on.
#[derive(Clone, Copy)]
struct Phase {
    workload: Workload,
    tracing: bool,
}

impl Phase {
    fn label(self) -> String {
        let workload = match self.workload {
            Workload::Idle => "idle",
            Workload::Lifecycle => "container lifecycle",
        };
        let tracing = if self.tracing { "on" } else { "off" };
        format!("{workload}, tracing {tracing}")
    }
}

/// Phases in the order they claim functions: a function belongs to the first phase that runs it.
const CLAIM_ORDER: [Phase; 4] = [
    Phase {
        workload: Workload::Idle,
        tracing: false,
    },
    Phase {
        workload: Workload::Idle,
        tracing: true,
    },
    Phase {
        workload: Workload::Lifecycle,
        tracing: false,
    },
    Phase {
        workload: Workload::Lifecycle,
        tracing: true,
    },
];

/// Where each phase's functions go, as indices into `CLAIM_ORDER`: idle with tracing off last,
/// next to the PLT every call goes through, and idle with tracing on right before it, so that
/// an idle monitor maps one contiguous stretch either way.
const LAYOUT_ORDER: [usize; 4] = [3, 2, 1, 0];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, output] = args.as_slice() else {
        anyhow::bail!("usage: CONMOND_BINARY=CONMOND hot_functions OUTPUT");
    };
    require_privileged();
    let instances = Instances::of(&conmond_binary())?;
    let work = tempfile::Builder::new().prefix("hot-functions").tempdir()?;
    let mut claimed = BTreeSet::new();
    let mut groups = Vec::new();
    for (n, phase) in CLAIM_ORDER.into_iter().enumerate() {
        let profile = work.path().join(format!("phase-{n}"));
        std::fs::create_dir(&profile)?;
        let names = run_local(profile_phase(&profile, phase))
            .with_context(|| format!("phase {}", phase.label()))?;
        let patterns: BTreeSet<String> = names
            .iter()
            .filter_map(|name| section_pattern(name, &instances))
            .filter(|pattern| !claimed.contains(pattern))
            .collect();
        eprintln!(
            "{}: {} functions, {} new patterns",
            phase.label(),
            names.len(),
            patterns.len()
        );
        claimed.extend(patterns.iter().cloned());
        groups.push((phase, patterns));
    }
    let layout: Vec<_> = LAYOUT_ORDER.iter().map(|&n| &groups[n]).collect();
    std::fs::write(output, linker_script(&layout))?;
    Ok(())
}

/// Runs `phase` against `conmond` under callgrind; returns the names of the functions the
/// daemon ran (the forking parent's are left out: the daemon never maps their pages).
async fn profile_phase(profile: &Path, phase: Phase) -> Result<BTreeSet<String>> {
    let receiver = otlp::Receiver::start(otlp::free_addr()?).await?;
    let endpoint = receiver.endpoint();
    let mut flags = vec!["--log-driver", "none", "--log-level", "info"];
    if phase.tracing {
        flags.extend(["--enable-tracing", "--tracing-endpoint", &endpoint]);
    }
    let out_file = format!("--callgrind-out-file={}/callgrind.%p", profile.display());
    // Valgrind keeps descriptors of its own open, and conmond's re-execution to shed inherited
    // ones would run valgrind's tool instead of conmond.
    let launcher = [
        "env",
        "CONMOND_NO_REEXEC=1",
        "valgrind",
        "--quiet",
        "--tool=callgrind",
        "--demangle=no",
        &out_file,
    ]
    .map(OsStr::new);
    let pod = Pod::start_via(&launcher, None, &flags)?;
    let client = pod.client().await?;
    client.version(true).await?;
    if phase.workload == Workload::Lifecycle {
        lifecycle(&pod, &client).await?;
    }
    drop(client);
    // Callgrind writes its profile as the daemon exits.
    pod.terminate(Duration::from_secs(120)).await?;
    callgrind_functions(&profile.join(format!("callgrind.{}", pod.pid)))
}

/// What a pod's containers do most: start, log, exec, exit.
async fn lifecycle(pod: &Pod, client: &MonitorClient) -> Result<()> {
    let mut requests = Vec::new();
    for (id, script) in [
        ("running", "echo started; exec sleep 100000"),
        ("exiting", "echo out; echo err >&2; exit 3"),
    ] {
        let mut request = pod.script_request(id, script)?;
        request.stdin = true;
        request.log_drivers = log_to(LogFormat::Cri, &pod.path(&format!("{id}.log")), 0);
        pod.start_container(client, &request).await?;
        requests.push(request);
    }
    let slow = Duration::from_secs(60);
    wait_for_file(&requests[1].exit_paths[0], slow).await?;
    let result = client
        .exec_sync(&exec_request("running", &["echo", "hi"]))
        .await?;
    anyhow::ensure!(result.exit_code == 0, "exec: {result:?}");
    let mut timing_out = exec_request("running", &["sleep", "100"]);
    timing_out.timeout = Some(Duration::from_secs(1));
    client.exec_sync(&timing_out).await?;
    client.reopen_log("running").await?;
    pod.runc(&["kill", "running", "KILL"])?;
    wait_for_file(&requests[0].exit_paths[0], slow).await?;
    Ok(())
}

fn callgrind_functions(path: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(function_names(&text))
}

/// The names of the functions in a callgrind profile: each is named once, on the first
/// `fn=(id) name` or `cfn=(id) name` line that uses its id.
fn function_names(profile: &str) -> BTreeSet<String> {
    profile
        .lines()
        .filter_map(|line| {
            line.strip_prefix("fn=")
                .or_else(|| line.strip_prefix("cfn="))
        })
        .filter_map(|entry| entry.split_once(") "))
        .map(|(_, name)| name.trim().to_owned())
        .collect()
}

/// How many functions of the profiled binary share each legacy-mangled name up to its hash:
/// the instances of one generic function (or of one function in different crate versions).
struct Instances(HashMap<String, usize>);

impl Instances {
    /// Counts the function symbols of `binary` (with `nm`).
    fn of(binary: &Path) -> Result<Self> {
        let output = std::process::Command::new("nm")
            .args(["--defined-only", "--format=posix"])
            .arg(binary)
            .output()
            .context("run nm (binutils)")?;
        anyhow::ensure!(
            output.status.success(),
            "nm {}: {output:?}",
            binary.display()
        );
        let mut counts = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut fields = line.split_whitespace();
            if let (Some(name), Some("t" | "T")) = (fields.next(), fields.next())
                && let Some(rest) = without_legacy_hash(without_copy_number(name))
            {
                *counts.entry(rest.to_owned()).or_default() += 1;
            }
        }
        Ok(Self(counts))
    }

    fn generic(&self, rest: &str) -> bool {
        self.0.get(rest).is_some_and(|&count| count > 1)
    }
}

/// The input sections that hold function `name`, as a linker-script pattern, or `None` for
/// names no section is called by (addresses, names with characters outside mangled names).
/// With `-ffunction-sections` each function is in `.text.NAME`, or `.text.unlikely.NAME` when
/// it is cold. The hash ending a legacy-mangled name changes with the features its crate is
/// built with (a `-p conmon` build and a workspace build differ), so it is left open, except
/// where the profiled binary has several instances of the name: those differ only there, and
/// matching any hash would pull in every other instance of a generic function. The number
/// LLVM appends to a local copy (`NAME.1268`, `NAME.llvm.42`) is always left open.
fn section_pattern(name: &str, instances: &Instances) -> Option<String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$');
    if name.starts_with("0x") || !name.chars().all(legal) {
        return None;
    }
    let name = without_copy_number(name);
    let names = match without_legacy_hash(name) {
        Some(rest) if !instances.generic(rest) => vec![format!("{rest}*")],
        _ => vec![name.to_owned(), format!("{name}.*")],
    };
    let sections: Vec<String> = ["text", "text.unlikely"]
        .iter()
        .flat_map(|section| names.iter().map(move |name| format!(".{section}.{name}")))
        .collect();
    Some(sections.join(" "))
}

/// A legacy-mangled name up to its hash (`_ZN…17h`), when it ends in one (16 hex digits, `E`).
fn without_legacy_hash(name: &str) -> Option<&str> {
    let body = name.strip_prefix("_ZN").and(name.strip_suffix('E'))?;
    let (rest, hash) = body.split_at_checked(body.len().checked_sub(16)?)?;
    (rest.ends_with("17h") && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(rest)
}

/// `name` without the number LLVM appends to a local copy of a function (`.1268`, `.llvm.42`).
/// Mangled names themselves never end in `.` and digits.
fn without_copy_number(name: &str) -> &str {
    let Some((rest, number)) = name.rsplit_once('.') else {
        return name;
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return name;
    }
    rest.strip_suffix(".llvm").unwrap_or(rest)
}

fn linker_script(groups: &[&(Phase, BTreeSet<String>)]) -> String {
    let mut script = String::from(
        "/* Generated by scripts/hot-functions: the functions conmond runs, packed into one\n   \
         output section so that the pages it maps are the pages it runs (see\n   \
         tests/src/bin/hot_functions.rs). Regenerate after larger changes; functions missing\n   \
         here still link, only further away. */\nSECTIONS\n{\n  .text.hot : {\n",
    );
    for (phase, patterns) in groups {
        script.push_str(&format!("    /* {} */\n    *(\n", phase.label()));
        for pattern in patterns {
            script.push_str(&format!("      {pattern}\n"));
        }
        script.push_str("    )\n");
    }
    // `_start`, run once by every process.
    script.push_str("    *crt1.o(.text)\n  }\n}\nINSERT AFTER .text;\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_first_use_of_each_id() {
        let profile = "fn=(1) main\ncalls=1 0\ncfn=(2) _ZN3foo3bar17h0123456789abcdefE\n\
                       fn=(2)\n0 5\nfn=(3) 0x0000000000001050\n";
        let names: Vec<_> = function_names(profile).into_iter().collect();
        assert_eq!(
            names,
            [
                "0x0000000000001050",
                "_ZN3foo3bar17h0123456789abcdefE",
                "main"
            ]
        );
    }

    /// `foo::bar` has two instances (a generic function), `bytes::freeze` one.
    fn instances() -> Instances {
        Instances(HashMap::from([
            ("_ZN3foo3bar17h".to_owned(), 2),
            ("_ZN5bytes6freeze17h".to_owned(), 1),
        ]))
    }

    #[test]
    fn generic_instances_keep_their_hash_and_other_functions_match_any() {
        assert_eq!(
            section_pattern("_ZN3foo3bar17h0123456789abcdefE", &instances()).as_deref(),
            Some(
                ".text._ZN3foo3bar17h0123456789abcdefE .text._ZN3foo3bar17h0123456789abcdefE.* \
                 .text.unlikely._ZN3foo3bar17h0123456789abcdefE \
                 .text.unlikely._ZN3foo3bar17h0123456789abcdefE.*"
            )
        );
        assert_eq!(
            section_pattern("_ZN5bytes6freeze17h6ad0f82a4fad9822E", &instances()).as_deref(),
            Some(".text._ZN5bytes6freeze17h* .text.unlikely._ZN5bytes6freeze17h*")
        );
        // v0 names carry no per-build hash, only the copy number.
        assert_eq!(
            section_pattern("_RNvCs1234_3std4exit", &instances()).as_deref(),
            Some(
                ".text._RNvCs1234_3std4exit .text._RNvCs1234_3std4exit.* \
                 .text.unlikely._RNvCs1234_3std4exit .text.unlikely._RNvCs1234_3std4exit.*"
            )
        );
        assert_eq!(
            section_pattern("_ZN3foo17hnot_a_hash_at_allE", &instances()).as_deref(),
            Some(
                ".text._ZN3foo17hnot_a_hash_at_allE .text._ZN3foo17hnot_a_hash_at_allE.* \
                 .text.unlikely._ZN3foo17hnot_a_hash_at_allE \
                 .text.unlikely._ZN3foo17hnot_a_hash_at_allE.*"
            )
        );
        for name in [
            "0x0000000000001050",
            "_IO_file_close_it@@GLIBC_2.2.5",
            "(below main)",
        ] {
            assert_eq!(section_pattern(name, &instances()), None);
        }
    }

    #[test]
    fn patterns_match_any_copy_number() {
        // The profiled build numbered this copy 1268; the release build may number it 2256.
        assert_eq!(
            section_pattern("_RNvXs2_NtCs1_3std13DefaultHasher5write.1268", &instances())
                .as_deref(),
            Some(
                ".text._RNvXs2_NtCs1_3std13DefaultHasher5write \
                 .text._RNvXs2_NtCs1_3std13DefaultHasher5write.* \
                 .text.unlikely._RNvXs2_NtCs1_3std13DefaultHasher5write \
                 .text.unlikely._RNvXs2_NtCs1_3std13DefaultHasher5write.*"
            )
        );
        assert_eq!(
            section_pattern("_ZN3foo3bar17h0123456789abcdefE.llvm.794", &instances()).as_deref(),
            Some(
                ".text._ZN3foo3bar17h0123456789abcdefE .text._ZN3foo3bar17h0123456789abcdefE.* \
                 .text.unlikely._ZN3foo3bar17h0123456789abcdefE \
                 .text.unlikely._ZN3foo3bar17h0123456789abcdefE.*"
            )
        );
        // Only a trailing number is a copy number.
        assert_eq!(
            without_copy_number("systrim.constprop.0"),
            "systrim.constprop"
        );
        assert_eq!(
            without_copy_number("_ZN3foo..bar17h0123456789abcdefE"),
            "_ZN3foo..bar17h0123456789abcdefE"
        );
        assert_eq!(without_copy_number("name."), "name.");
    }
}
