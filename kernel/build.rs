//! Links the kernel with boot's linker script (published by boot's build script).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_XENRS_BOOT_LINKER_SCRIPT");
    match std::env::var("DEP_XENRS_BOOT_LINKER_SCRIPT") {
        Ok(script) => {
            println!("cargo:rerun-if-changed={script}");
            println!("cargo:rustc-link-arg-bins=-T{script}");
            println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
            println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        }
        Err(_) => panic!("boot's build script did not publish its linker script"),
    }
}
