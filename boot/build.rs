//! Publishes the path of `linker.ld` to the kernel's build script (`links = "xenrs-boot"`).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| String::from("."));
    let script = format!("{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:linker_script={script}");
}
