//! Generates the Rust bindings of `schema/conmon.capnp` with the system `capnp` compiler.

fn main() {
    println!("cargo:rerun-if-changed=schema/conmon.capnp");
    if let Err(err) = capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/conmon.capnp")
        .run()
    {
        panic!(
            "compiling schema/conmon.capnp failed ({err}); the Cap'n Proto compiler is needed: \
             apt-get install capnproto libcapnp-dev"
        );
    }
}
