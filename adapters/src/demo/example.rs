//! The example registry and its schemas, compiled in, so that `simpul demo` runs from anywhere:
//! an installed binary, a directory that is not a checkout.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

/// The checkout's `registry.toml` and `schemas/` as they were at build time (`build.rs` has
/// Cargo rebuild when either changes).
const REGISTRY: &str = include_str!("../../../registry.toml");
static SCHEMAS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../schemas");

/// Writes the built-in registry and its schemas under `dir`; returns the registry's path.
pub fn write(dir: &Path) -> std::io::Result<PathBuf> {
    let root = dir.join("example");
    let schemas = root.join("schemas");
    std::fs::create_dir_all(&schemas)?;
    SCHEMAS.extract(&schemas)?;
    let registry = root.join("registry.toml");
    std::fs::write(&registry, REGISTRY)?;
    Ok(registry)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_registry_loads_with_its_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::write(dir.path()).unwrap();
        let reg = bus::registry::Registry::load(&path).unwrap();
        assert!(reg.type_def("layanan.permohonan").is_some());
        assert!(reg.types().count() >= 14);
    }
}
