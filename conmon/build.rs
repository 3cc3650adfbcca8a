//! Records build information for `--version` and the `version` RPC.

use std::process::Command;

fn main() {
    let run = |program: &str, args: &[&str]| -> Option<String> {
        let output = Command::new(program).args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let set = |key: &str, value: Option<String>| {
        println!(
            "cargo:rustc-env={key}={}",
            value.unwrap_or_else(|| "unknown".into())
        );
    };
    set("CONMOND_COMMIT", run("git", &["rev-parse", "HEAD"]));
    set(
        "CONMOND_TAG",
        Some(run("git", &["describe", "--tags", "--exact-match"]).unwrap_or_default()),
    );
    set(
        "CONMOND_BUILD_DATE",
        run("date", &["-u", "+%Y-%m-%d %H:%M:%S"]),
    );
    set("CONMOND_TARGET", std::env::var("TARGET").ok());
    set("CONMOND_RUSTC_VERSION", run(&rustc, &["--version"]));
    set("CONMOND_CARGO_VERSION", run(&cargo, &["--version"]));
    // The dependency tree of this crate, for `version --full`; read from the lock file offline.
    let tree = run(
        &cargo,
        &[
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "-p",
            "conmon",
        ],
    );
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(
        format!("{out_dir}/cargo-tree.txt"),
        tree.unwrap_or_default(),
    )
    .expect("write cargo-tree.txt");
    // Packed relative relocations (DT_RELR, glibc >= 2.36): the relocation table the loader
    // reads at every start shrinks from ~170 KiB to a few KiB, and so does each conmond's memory.
    println!("cargo:rustc-link-arg-bin=conmond=-Wl,-z,pack-relative-relocs");
    // Optimised builds place the functions conmond runs next to each other (see
    // `hot-functions.ld`), so that an idle monitor maps ~0.8 MB less of its executable, and are
    // stripped here rather than by cargo (see the release profile), unless a profiler needs the
    // symbols.
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rerun-if-env-changed=CONMOND_KEEP_SYMBOLS");
        if std::env::var_os("CONMOND_KEEP_SYMBOLS").is_none() {
            println!("cargo:rustc-link-arg-bin=conmond=-Wl,--strip-all");
        }
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
        for script in ["hot-functions.ld", "unwind-tables.ld"] {
            println!("cargo:rustc-link-arg-bin=conmond=-Wl,-T,{manifest_dir}/{script}");
            println!("cargo:rerun-if-changed={script}");
        }
    }
    // The commit changes with HEAD, and on a branch with the branch's ref (loose or packed). In
    // a worktree `.git` is a file, so ask git where they are; only existing files are watched
    // (a missing one would rerun this script on every build).
    let branch = run("git", &["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref())
        .filter_map(|name| {
            run(
                "git",
                &["rev-parse", "--path-format=absolute", "--git-path", name],
            )
        })
        .filter(|path| std::path::Path::new(path).exists());
    for path in watched {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
