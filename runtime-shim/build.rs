//! Optimised builds strip the binary's symbols at link time (see the release profile in the
//! workspace's Cargo.toml for why not with cargo's `strip`).

fn main() {
    println!("cargo:rerun-if-env-changed=CONMOND_KEEP_SYMBOLS");
    if std::env::var("PROFILE").as_deref() == Ok("release")
        && std::env::var_os("CONMOND_KEEP_SYMBOLS").is_none()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
    }
}
