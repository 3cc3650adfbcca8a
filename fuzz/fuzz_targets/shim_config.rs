//! runtime-shim's CRI-O configuration parser (`runtime-shim/src/config/`), through its entry
//! point `Config::load` (which reads each file and applies its TOML with `apply_toml`, then
//! validates): the input, as UTF-8, is `crio.conf`; text after a NUL byte (which TOML never
//! holds) is a drop-in `crio.conf.d/10-fuzz.conf` applied on top.
//!
//! Invariants: a loaded configuration has a handler for its default runtime, a sampling rate
//! within 0..=1000000, a `log_size_max` of -1 or at least 8192, and each handler's monitor log
//! driver is what its `LOG_DRIVER=` entry names; an error renders as a message.
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;
use runtime_shim::config::{Config, MonitorLogDriver, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (main, drop_in) = match text.split_once('\0') {
        Some((main, drop_in)) => (main, Some(drop_in)),
        None => (text, None),
    };
    let dir = scratch::scratch_dir();
    let main_path = dir.path().join("crio.conf");
    let drop_in_dir = dir.path().join("crio.conf.d");
    std::fs::write(&main_path, main).expect("write crio.conf");
    if let Some(drop_in) = drop_in {
        std::fs::create_dir(&drop_in_dir).expect("create crio.conf.d");
        std::fs::write(drop_in_dir.join("10-fuzz.conf"), drop_in).expect("write drop-in");
    }
    match Config::load(&main_path, &drop_in_dir, &Overrides::default()) {
        Ok((config, warnings)) => {
            let (name, _) = config.handler("").expect("a default handler");
            assert_eq!(name, config.default_runtime);
            assert!(config.tracing.tracing_sampling_rate_per_million <= 1_000_000);
            assert!(config.log_size_max == -1 || config.log_size_max >= 8192);
            for handler in config.runtimes.values() {
                let driver = match handler.monitor_env_value("LOG_DRIVER") {
                    None => MonitorLogDriver::None,
                    Some(name) => [
                        MonitorLogDriver::None,
                        MonitorLogDriver::Stdout,
                        MonitorLogDriver::Systemd,
                    ]
                    .into_iter()
                    .find(|driver| driver.as_str() == name)
                    .expect("an accepted LOG_DRIVER"),
                };
                assert_eq!(handler.monitor_log_driver, driver, "{handler:?}");
                let _ = (handler.runtime_root(), handler.monitor_binary());
            }
            let _ = (config.tracing.endpoint_url(), warnings);
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
