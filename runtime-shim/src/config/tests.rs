use super::*;

fn load(
    files: &[(&str, &str)],
    overrides: &Overrides,
) -> Result<(Config, Vec<String>), ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let drop_ins = dir.path().join("crio.conf.d");
    std::fs::create_dir(&drop_ins).unwrap();
    for (name, text) in files {
        let path = if *name == "crio.conf" {
            dir.path().join(name)
        } else {
            drop_ins.join(name)
        };
        std::fs::write(path, text).unwrap();
    }
    Config::load(&dir.path().join("crio.conf"), &drop_ins, overrides)
}

#[test]
fn defaults_match_cri_o() {
    let (config, warnings) = load(&[], &Overrides::default()).unwrap();
    assert_eq!(config, Config::default());
    assert!(warnings.is_empty());
    assert_eq!(config.tracing.tracing_endpoint, "127.0.0.1:4317");
    assert_eq!(config.tracing.tracing_sampling_rate_per_million, 0);
    let (name, handler) = config.handler("").unwrap();
    assert_eq!((name, handler.runtime_type), ("crun", RuntimeType::Oci));
    assert_eq!(handler.runtime_root(), Path::new("/run/crun"));
    assert_eq!(handler.monitor_binary(), Path::new("conmon"));
}

#[test]
fn drop_ins_apply_in_lexical_order_key_by_key() {
    let main = r#"
        [crio.runtime]
        default_runtime = "runc"
        [crio.runtime.runtimes.runc]
        runtime_path = "/usr/sbin/runc"
        runtime_type = "oci"
    "#;
    let first = r#"
        [crio.runtime.runtimes.runc]
        runtime_type = "pod"
        monitor_path = "/usr/local/bin/conmond"
        monitor_env = ["LOG_DRIVER=systemd"]
        [crio.tracing]
        enable_tracing = true
        tracing_sampling_rate_per_million = 10
    "#;
    let second = r#"
        [crio.runtime.runtimes.runc]
        monitor_path = "/opt/conmond"
        [crio.tracing]
        tracing_sampling_rate_per_million = 1000000
    "#;
    // Named so that lexical order differs from creation order.
    let (config, _) = load(
        &[
            ("crio.conf", main),
            ("20-b.conf", second),
            ("10-a.conf", first),
        ],
        &Overrides::default(),
    )
    .unwrap();
    let handler = &config.runtimes["runc"];
    assert_eq!(handler.runtime_type, RuntimeType::Pod);
    assert_eq!(handler.runtime_path, Path::new("/usr/sbin/runc"));
    assert_eq!(handler.monitor_path, Path::new("/opt/conmond"));
    assert_eq!(handler.monitor_env_value("LOG_DRIVER"), Some("systemd"));
    assert_eq!(handler.monitor_log_driver, MonitorLogDriver::Systemd);
    assert!(config.tracing.enable_tracing);
    assert_eq!(config.tracing.tracing_sampling_rate_per_million, 1_000_000);
    assert_eq!(config.handler("").unwrap().0, "runc");
}

#[test]
fn overrides_win_over_files() {
    let file = "[crio.tracing]\nenable_tracing = false\ntracing_endpoint = \"10.0.0.1:4317\"\n";
    let overrides = Overrides {
        enable_tracing: Some(true),
        tracing_endpoint: Some("127.0.0.1:14317".into()),
        tracing_sampling_rate_per_million: Some(5),
        default_runtime: None,
    };
    let (config, _) = load(&[("crio.conf", file)], &overrides).unwrap();
    assert!(config.tracing.enable_tracing);
    assert_eq!(config.tracing.tracing_endpoint, "127.0.0.1:14317");
    assert_eq!(config.tracing.tracing_sampling_rate_per_million, 5);
}

/// The error loading `text` as file `name` gives.
fn load_error(name: &str, text: &str) -> String {
    load(&[(name, text)], &Overrides::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn invalid_values_name_the_key_and_the_file() {
    let cases: [(&str, &str, &[&str]); 8] = [
        (
            "10-x.conf",
            "[crio.runtime.runtimes.vm]\nruntime_type = \"vm\"\n",
            &[
                "crio.runtime.runtimes.vm.runtime_type",
                "10-x.conf",
                "'vm' is not one of oci, pod",
            ],
        ),
        (
            "crio.conf",
            "[crio.tracing]\nenable_tracing = \"yes\"\n",
            &["crio.tracing.enable_tracing", "expected true or false"],
        ),
        (
            "crio.conf",
            "[crio.tracing]\ntracing_sampling_rate_per_million = -1\n",
            &["tracing_sampling_rate_per_million"],
        ),
        ("crio.conf", "[crio.runtime\n", &["parse config file"]),
        (
            "crio.conf",
            "[crio.runtime]\ndefault_runtime = \"ghost\"\n",
            &["ghost"],
        ),
        (
            "crio.conf",
            "[crio.runtime]\ncgroup_manager = \"cgroupv3\"\n",
            &["'cgroupv3' is not one of systemd, cgroupfs"],
        ),
        (
            "crio.conf",
            "[crio.runtime]\nlog_level = \"loud\"\n",
            &["'loud' is not one of trace"],
        ),
        (
            "crio.conf",
            "[crio.runtime.runtimes.p]\nmonitor_env = [\"LOG_DRIVER=carrier-pigeon\"]\n",
            &["LOG_DRIVER: 'carrier-pigeon' is not one of none, stdout, systemd"],
        ),
    ];
    for (name, text, expected) in cases {
        let err = load_error(name, text);
        for part in expected {
            assert!(err.contains(part), "{text}: {err}");
        }
    }
}

#[test]
fn values_are_parsed_into_types() {
    let text = "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nlog_level = \"fatal\"\n";
    let (config, _) = load(&[("crio.conf", text)], &Overrides::default()).unwrap();
    assert_eq!(config.cgroup_manager, CgroupManager::Cgroupfs);
    assert_eq!(config.log_level, CrioLogLevel::Fatal);
    assert_eq!(config.log_level.monitor_level(), LogLevel::Off);
    assert_eq!(config.tracing.endpoint_url(), "http://127.0.0.1:4317");
}

#[test]
fn unknown_keys_are_warned_about() {
    let file = "[crio.runtime]\nfrobnicate = 1\n[crio.tracing]\nsparkle = true\n[crio.image]\npause_image = \"x\"\n";
    let (_, warnings) = load(&[("crio.conf", file)], &Overrides::default()).unwrap();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown key crio.tracing.sparkle"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("crio.runtime.frobnicate"))
    );
}

#[test]
fn monitor_cgroup_is_read_once_and_checked_against_the_manager() {
    let handler = |value: &str| {
        format!(
            "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n\
             [crio.runtime.runtimes.crun]\nmonitor_cgroup = \"{value}\"\n"
        )
    };
    let monitor_cgroup = |text: &str| {
        let (config, _) = load(&[("crio.conf", text)], &Overrides::default()).unwrap();
        config.runtimes["crun"].monitor_cgroup.clone()
    };
    assert_eq!(monitor_cgroup(&handler("pod")), MonitorCgroup::Pod);
    assert_eq!(
        monitor_cgroup(&handler("/m/x")),
        MonitorCgroup::parse("/m/x").unwrap()
    );
    let err = load_error("crio.conf", &handler("m/x"));
    assert!(
        err.contains("crio.runtime.runtimes.crun.monitor_cgroup"),
        "{err}"
    );
    // The manager may come from a later file: checked once all are applied.
    let later = "[crio.runtime]\ncgroup_manager = \"systemd\"\n";
    let err = load(
        &[("crio.conf", &handler("/m/x")), ("10-systemd.conf", later)],
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("crio.runtime.runtimes.crun.monitor_cgroup = '/m/x'")
            && err.contains("cgroup_manager = \"systemd\""),
        "{err}"
    );
    let err = load_error("crio.conf", &handler("machine.slice"));
    assert!(
        err.contains("'machine.slice'") && err.contains("\"cgroupfs\""),
        "{err}"
    );
}
