//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs nothing but Rust to build hutch: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["hutch/v1/agent.proto", "tart/agent.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Bulk data as `Bytes`: decoding then slices the received buffer
        // instead of copying every chunk into a fresh `Vec`.
        .bytes(".hutch.v1.ExecRequest.stdin")
        .bytes(".hutch.v1.ExecResponse.stdout")
        .bytes(".hutch.v1.ExecResponse.stderr")
        .bytes(".hutch.v1.AttachRequest.stdin")
        .bytes(".IOChunk.data")
        .bytes(".hutch.v1.ForwardRequest.data")
        .bytes(".hutch.v1.ForwardResponse.data")
        .compile_fds(descriptors)?;
    Ok(())
}
