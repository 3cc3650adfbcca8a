//! Build information reported by `--version`, `--version-json` and the `version` RPC.

use conmon_proto::types::VersionInfo;
use serde::Serialize;

/// Everything known about this build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    /// Whether `cargo_tree` is filled in.
    pub verbose: bool,
    /// Semantic version of conmond.
    pub version: &'static str,
    /// Release tag, empty for untagged builds.
    pub tag: &'static str,
    /// Git commit the binary was built from.
    pub commit: &'static str,
    /// Build time, `YYYY-MM-DD HH:MM:SS` UTC.
    pub build_date: &'static str,
    /// Target triple.
    pub target: &'static str,
    /// `rustc --version` of the compiler.
    pub rust_version: &'static str,
    /// `cargo --version` of the build tool.
    pub cargo_version: &'static str,
    /// The dependency tree; empty unless verbose.
    pub cargo_tree: &'static str,
}

impl BuildInfo {
    /// This binary's build information; `verbose` adds the dependency tree.
    pub fn get(verbose: bool) -> Self {
        Self {
            verbose,
            version: env!("CARGO_PKG_VERSION"),
            tag: env!("CONMOND_TAG"),
            commit: env!("CONMOND_COMMIT"),
            build_date: env!("CONMOND_BUILD_DATE"),
            target: env!("CONMOND_TARGET"),
            rust_version: env!("CONMOND_RUSTC_VERSION"),
            cargo_version: env!("CONMOND_CARGO_VERSION"),
            cargo_tree: if verbose {
                include_str!(concat!(env!("OUT_DIR"), "/cargo-tree.txt"))
            } else {
                ""
            },
        }
    }

    /// The `--version` text: one `key: value` line per item, as conmon-rs prints it.
    pub fn text(&self) -> String {
        let tag = if self.tag.is_empty() {
            "none"
        } else {
            self.tag
        };
        let mut text = format!(
            "version: {}\ntag: {}\ncommit: {}\nbuild: {}\ntarget: {}\n{}\n{}\n",
            self.version,
            tag,
            self.commit,
            self.build_date,
            self.target,
            self.rust_version,
            self.cargo_version
        );
        if self.verbose {
            text.push_str("\ncargo tree: ");
            text.push_str(self.cargo_tree);
        }
        text
    }

    /// The `version` RPC's answer for the daemon with PID `process_id`.
    pub fn to_wire(&self, process_id: u32) -> VersionInfo {
        VersionInfo {
            process_id,
            version: self.version.into(),
            tag: self.tag.into(),
            commit: self.commit.into(),
            build_date: self.build_date.into(),
            target: self.target.into(),
            rust_version: self.rust_version.into(),
            cargo_version: self.cargo_version.into(),
            cargo_tree: self.cargo_tree.into(),
        }
    }

    /// The `--version-json` line.
    pub fn json(&self) -> String {
        // Serializing a struct of strings and a bool cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
