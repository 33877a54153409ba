//! The secret behind an adapter's derived event ids.
//!
//! Adapters give a native record an id derived from its natural key (a NIP and punch time, a
//! SIAK log sequence), so a re-import yields the same ids and the bus's idempotency drops the
//! repeats. Those natural keys are guessable, so an unkeyed hash of them could be predicted
//! (and an id claimed before the real event arrives). The ids are therefore an HMAC-SHA-256
//! under a 32-byte secret of the adapter's, created from the OS RNG on first run.
//!
//! **Where the key lives.** In its own file next to the adapter's state: the directory of the
//! outbox database, named after the member (`GOV_bkpsdm_eabsen.idkey` beside
//! `GOV_bkpsdm_eabsen.db` in `simpul demo --dir`), mode 0600, raw 32 bytes. It is a file and
//! not a row in the outbox database because the ids must outlive an outbox file: an adapter
//! reinstalled with a fresh outbox in the same state directory (or given a copy of the key on
//! another PC) derives the same ids again, so the bus still drops what it already has; a key
//! inside the outbox would be lost with it. The file also keeps its own 0600 permissions,
//! whatever the database's, and can be backed up or provisioned on its own. Back it up with
//! the outbox: losing it changes every id from then on.
//!
//! The key is created atomically (written to a temporary file, synced, then renamed into
//! place without replacing anything), so a crash never leaves half a key and two processes
//! starting at once end up with the same one. A key file of the wrong length is an error
//! naming the file, never replaced: a new key would change every id and break the dedup.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Length of the secret in bytes.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum IdKeyError {
    #[error("id key {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "id key {}: holds {len} bytes, expected {KEY_LEN}; it is left as it is, since a new key would change every event id (restore it from the backup)",
        .path.display()
    )]
    Length { path: PathBuf, len: usize },
    #[error("id key {}: no randomness from the OS: {source}", .path.display())]
    Rng {
        path: PathBuf,
        source: getrandom::Error,
    },
}

/// An adapter's id secret. Cheap to clone; `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IdKey([u8; KEY_LEN]);

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(..)")
    }
}

impl IdKey {
    /// A key from known bytes (a key provisioned by other means, tests).
    pub fn from_bytes(secret: [u8; KEY_LEN]) -> IdKey {
        IdKey(secret)
    }

    /// The key file of `member` whose outbox database is `outbox`: in the same directory,
    /// named after the member (`/` → `_`), so every outbox of one member in that directory
    /// shares it.
    pub fn path_for(outbox: &Path, member: &str) -> PathBuf {
        let dir = match outbox.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        dir.join(format!("{}.idkey", member.replace('/', "_")))
    }

    /// Reads the key at `path`, or creates it there (mode 0600, from the OS RNG) if there is
    /// none yet.
    pub fn load_or_create(path: &Path) -> Result<IdKey, IdKeyError> {
        match Self::load(path) {
            Err(IdKeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path)
            }
            r => r,
        }
    }

    fn load(path: &Path) -> Result<IdKey, IdKeyError> {
        let bytes = std::fs::read(path).map_err(|source| IdKeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let secret: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdKeyError::Length {
                    path: path.to_owned(),
                    len: bytes.len(),
                })?;
        Ok(IdKey(secret))
    }

    fn create(path: &Path) -> Result<IdKey, IdKeyError> {
        let io = |source| IdKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut secret = [0u8; KEY_LEN];
        getrandom::fill(&mut secret).map_err(|source| IdKeyError::Rng {
            path: path.to_owned(),
            source,
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".idkey-").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut tmp = builder.tempfile_in(dir).map_err(io)?;
        tmp.write_all(&secret).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => {}
            // Another process created it first: use theirs, so both derive the same ids.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::load(path);
            }
            Err(e) => return Err(io(e.error)),
        }
        // Make the new directory entry durable too (not possible, nor needed, on Windows).
        #[cfg(unix)]
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        tracing::info!(path = %path.display(), "created the adapter's id key");
        Ok(IdKey(secret))
    }

    /// The id of a native record with natural key `parts`: HMAC-SHA-256 under this key over
    /// the parts, each prefixed with its length (so `["ab", "c"]` and `["a", "bc"]` differ),
    /// the first 16 bytes as a UUIDv8.
    pub fn derive(&self, parts: &[&str]) -> Uuid {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        let d = mac.finalize().into_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        Uuid::new_v8(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation used before ids were keyed: a plain SHA-256 anyone could recompute.
    fn unkeyed(parts: &[&str]) -> Uuid {
        use sha2::Digest;
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        Uuid::new_v8(b)
    }

    const PUNCH: [&str; 3] = [
        "eabsen.kehadiran",
        "197803122005011002",
        "2026-11-23T07:01:02+07:00",
    ];

    #[test]
    fn ids_are_stable_when_the_key_is_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = IdKey::path_for(&dir.path().join("eabsen.db"), "GOV/bkpsdm/eabsen");
        assert_eq!(path, dir.path().join("GOV_bkpsdm_eabsen.idkey"));
        let first = IdKey::load_or_create(&path).unwrap();
        let id = first.derive(&PUNCH);
        // A restart, and a reinstall with a fresh outbox in the same directory.
        let again = IdKey::load_or_create(&path).unwrap();
        let reinstalled = IdKey::load_or_create(&IdKey::path_for(
            &dir.path().join("eabsen-reinstalled.db"),
            "GOV/bkpsdm/eabsen",
        ))
        .unwrap();
        assert_eq!(again, first);
        assert_eq!(again.derive(&PUNCH), id);
        assert_eq!(reinstalled.derive(&PUNCH), id);
        assert_eq!(id.get_version_num(), 8);
    }

    #[test]
    fn another_directory_has_another_key_and_other_ids() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ka = IdKey::load_or_create(&a.path().join("k.idkey")).unwrap();
        let kb = IdKey::load_or_create(&b.path().join("k.idkey")).unwrap();
        assert_ne!(ka, kb);
        assert_ne!(ka.derive(&PUNCH), kb.derive(&PUNCH));
        // Another member in the same directory has its own key too.
        let other = IdKey::path_for(&a.path().join("x.db"), "GOV/dukcapil");
        let kc = IdKey::load_or_create(&other).unwrap();
        assert_ne!(kc.derive(&PUNCH), ka.derive(&PUNCH));
    }

    #[test]
    fn keyed_ids_differ_from_the_old_unkeyed_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let k = IdKey::load_or_create(&dir.path().join("k.idkey")).unwrap();
        for parts in [
            &PUNCH[..],
            &["GOV/dukcapil", "log", "1", "MATI"],
            &["GOV/dpmptsp", "status", "7"],
        ] {
            assert_ne!(k.derive(parts), unkeyed(parts), "{parts:?}");
        }
        // Even a key of zeroes is not the plain hash.
        let zero = IdKey::from_bytes([0; KEY_LEN]);
        assert_ne!(zero.derive(&PUNCH), unkeyed(&PUNCH));
    }

    #[test]
    fn the_parts_are_length_prefixed() {
        let k = IdKey::from_bytes([7; KEY_LEN]);
        assert_ne!(k.derive(&["ab", "c"]), k.derive(&["a", "bc"]));
        assert_ne!(k.derive(&["abc"]), k.derive(&["ab", "c"]));
        assert_eq!(k.derive(&["ab", "c"]), k.derive(&["ab", "c"]));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_created_with_mode_0600_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("GOV_dukcapil.idkey");
        let k = IdKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), k.0);
        // Nothing but the key is left behind (no temporary file).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("GOV_dukcapil.idkey")]);
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("GOV_dukcapil.idkey");
        for bad in [&b""[..], &[1u8; 31][..], &[1u8; 33][..], &[b'a'; 64][..]] {
            std::fs::write(&path, bad).unwrap();
            let e = IdKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(&e, IdKeyError::Length { len, .. } if *len == bad.len()),
                "{e:?}"
            );
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bad,
                "the file was not replaced"
            );
        }
    }

    #[test]
    fn processes_starting_at_once_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.idkey");
        let keys: Vec<IdKey> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| IdKey::load_or_create(&path).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(std::fs::read(&path).unwrap(), keys[0].0);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        assert_eq!(
            format!("{:?}", IdKey::from_bytes([0xab; KEY_LEN])),
            "IdKey(..)"
        );
    }
}
