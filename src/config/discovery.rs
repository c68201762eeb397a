//! Finding the config file: which path `REPLICA_CONFIG`, `LITESTREAM_CONFIG` or the default
//! locations name (whether a path exists is asked of the caller's `exists` function), and
//! reading it with bounds: a regular file only, of at most 1 MiB, so that a path naming a
//! FIFO, a device or a huge file neither hangs nor fills the host. Parsing is someone else's
//! job.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::env::Env;
use super::model::ConfigError;
use super::paths::{absolutize, normalize};
use super::yaml::{too_large, MAX_CONFIG_BYTES};

/// Finds the config file: `REPLICA_CONFIG`, then `LITESTREAM_CONFIG` (a named file that does not
/// exist is an error; `REPLICA_CONFIG=off` means no file), then `<cwd>/config/litestream.yml`,
/// then `/etc/litestream.yml`. Relative and `~` paths are resolved with `env`.
pub fn locate_config_file(
    env: &Env,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Option<PathBuf>, ConfigError> {
    for var in ["REPLICA_CONFIG", "LITESTREAM_CONFIG"] {
        if let Some(v) = env.get(var) {
            let v = v.trim();
            if var == "REPLICA_CONFIG" && v.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let path = absolutize(v, env).map_err(|reason| ConfigError::Env {
                var: var.to_string(),
                reason,
            })?;
            if !exists(&path) {
                return Err(ConfigError::ConfigFileNotFound {
                    var: var.to_string(),
                    path,
                });
            }
            return Ok(Some(path));
        }
    }
    let local = normalize(&env.cwd.join("config").join("litestream.yml"));
    if exists(&local) {
        return Ok(Some(local));
    }
    let etc = PathBuf::from("/etc/litestream.yml");
    if exists(&etc) {
        return Ok(Some(etc));
    }
    Ok(None)
}

/// Reads the config file at `path`: a regular file (after symlinks) of at most 1 MiB of UTF-8
/// ([`config_text`]). Checked before opening (opening a FIFO would wait for a writer) and
/// again on the opened file (the path may have been replaced in between); the read stops
/// one byte past the bound whatever the file claims.
pub(super) fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError::ReadConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let regular = |meta: &Metadata| -> Result<(), ConfigError> {
        match describe_non_file(meta) {
            None if meta.len() > MAX_CONFIG_BYTES as u64 => Err(too_large(path, meta.len())),
            None => Ok(()),
            Some(what) => Err(err(format!(
                "it is {what}, not a regular file; refusing to read it"
            ))),
        }
    };
    regular(&std::fs::metadata(path).map_err(|e| err(e.to_string()))?)?;
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    regular(&file.metadata().map_err(|e| err(e.to_string()))?)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    config_text(path, bytes)
}

/// The text of the config file at `path` (named in errors) from its bytes: at most 1 MiB of
/// UTF-8.
pub fn config_text(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| ConfigError::ReadConfigFile {
        path: path.to_path_buf(),
        reason: format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// What a file that is not a regular file is, for messages; `None` for a regular file.
fn describe_non_file(meta: &Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    }
}
