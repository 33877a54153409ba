//! The demo compiles in the example registry and schemas (`src/demo/example.rs`): rebuild when
//! they change.
fn main() {
    println!("cargo:rerun-if-changed=../registry.toml");
    println!("cargo:rerun-if-changed=../schemas");
}
