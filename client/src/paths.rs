//! Where a node keeps its data, for the client and the node alike.

use std::path::PathBuf;

/// The default data directory: `$VEIL_DATA_DIR`, else `$HOME/.veil`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("VEIL_DATA_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".veil"))
}
