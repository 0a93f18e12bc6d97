//! Compiles `dropline/v1/*.proto` with prost (protoc from `protoc-bin-vendored`, so no system
//! protoc is needed) and generates proto3-JSON serde impls with pbjson.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("dropline/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=dropline/v1");
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("dropline_descriptors.bin");
    prost_build::Config::new()
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .file_descriptor_set_path(&descriptors)
        .bytes([".dropline.v1.DeadLetter"])
        .compile_protos(&protos, &["."])?;

    let descriptor_set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new().register_descriptors(&descriptor_set)?.build(&[".dropline"])?;
    Ok(())
}
