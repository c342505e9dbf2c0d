//! Generates the externalgrpc gRPC code with a protoc that comes from crates.io
//! (`protoc-bin-vendored`), so the build never depends on what is installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &["proto/externalgrpc/externalgrpc.proto"],
            &[
                "proto",
                well_known.to_str().ok_or("non-UTF-8 protoc include path")?,
            ],
        )?;
    println!("cargo:rerun-if-changed=proto/externalgrpc/externalgrpc.proto");
    Ok(())
}
