//! The node's identity and the small files of its data directory.
//!
//! - `identity`: the static X25519 secret key (32 raw bytes, mode 0600), made on first
//!   start and reused; its public half is the node's [`NodeKey`].
//! - `token`: the API token (43 base64url characters, mode 0600), made on first start.
//! - `address` and `api`: written once the node is ready (see [`write_atomic`]).
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash never leaves half a key behind.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use veil_proto::NodeKey;

/// File name of the identity key in the data directory.
pub const IDENTITY_FILE: &str = "identity";
/// File name of the API token.
pub const TOKEN_FILE: &str = "token";
/// File name of the node's own peer address, written once ready.
pub const ADDRESS_FILE: &str = "address";
/// File name of the API base URL, written once ready.
pub const API_FILE: &str = "api";

/// Why the identity or token could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing a file of the data directory failed.
    #[error("{what} in {dir}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The data directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The identity file exists but does not hold a 32-byte key.
    #[error("the identity file in {0} is corrupt (expected 32 bytes); move it away to make a new identity")]
    Corrupt(PathBuf),
}

/// A node's static key pair. The secret never leaves this type except into the Noise
/// handshake.
#[derive(Clone)]
pub struct Identity {
    secret: [u8; 32],
    public: NodeKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish()
    }
}

impl Identity {
    /// Makes a fresh random identity.
    pub fn generate() -> Identity {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Identity::from_secret(secret)
    }

    /// The identity of a known secret key.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let s = x25519_dalek::StaticSecret::from(secret);
        let public = NodeKey(x25519_dalek::PublicKey::from(&s).to_bytes());
        Identity { secret, public }
    }

    /// The public key: the node's name on the network.
    pub fn public(&self) -> NodeKey {
        self.public
    }

    /// The secret key bytes, for the Noise handshake only.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Loads the identity from `dir`, making and saving a new one on first start.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        let io_err = |what, source| IdentityError::Io {
            what,
            dir: dir.to_path_buf(),
            source,
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityError::Corrupt(dir.to_path_buf()))?;
                tighten_permissions(&path).map_err(|e| io_err("fixing identity permissions", e))?;
                Ok(Identity::from_secret(secret))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = Identity::generate();
                write_atomic(&path, &id.secret, 0o600)
                    .map_err(|e| io_err("writing the identity", e))?;
                Ok(id)
            }
            Err(e) => Err(io_err("reading the identity", e)),
        }
    }
}

/// Loads the API token from `dir`, making a new random one on first start.
pub fn load_or_create_token(dir: &Path) -> Result<String, IdentityError> {
    let path = dir.join(TOKEN_FILE);
    let io_err = |what, source| IdentityError::Io {
        what,
        dir: dir.to_path_buf(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            tighten_permissions(&path).map_err(|e| io_err("fixing token permissions", e))?;
            Ok(t.trim().to_string())
        }
        Ok(_) => make_token(&path).map_err(|e| io_err("writing the token", e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_token(&path).map_err(|e| io_err("writing the token", e))
        }
        Err(e) => Err(io_err("reading the token", e)),
    }
}

fn make_token(path: &Path) -> io::Result<String> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    write_atomic(path, token.as_bytes(), 0o600)?;
    Ok(token)
}

/// Makes sure a secret file is readable by its owner only.
fn tighten_permissions(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!("a secret file in the data directory was readable by others; fixing");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Creates the data directory (mode 0700) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> Result<(), IdentityError> {
    if dir.is_dir() {
        // An existing directory keeps the operator's permissions; secret files carry
        // their own 0600.
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| IdentityError::Io {
            what: "creating the data directory",
            dir: dir.to_path_buf(),
            source,
        })
}

/// Writes `contents` to `path` atomically with the given permission bits: a reader sees
/// the old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` is filtered by the umask on creation; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn token_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.len(), 43);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), a);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt(_))
        ));
    }

    #[test]
    fn public_key_matches_snow() {
        let id = Identity::generate();
        let b = snow::Builder::new("Noise_XK_25519_ChaChaPoly_BLAKE2s".parse().unwrap());
        // snow derives the same public key from the same secret as x25519-dalek.
        let kp = b.generate_keypair().unwrap();
        let again = Identity::from_secret(kp.private.as_slice().try_into().unwrap());
        assert_eq!(again.public().0.as_slice(), kp.public.as_slice());
        assert_ne!(id.public(), again.public());
    }
}
