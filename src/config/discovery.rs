//! Finding the config file: which path `REPLICA_CONFIG`, `LITESTREAM_CONFIG` or the default
//! locations name. Decides the path only; whether a path exists is asked of the caller's
//! `exists` function, and reading and parsing the file is someone else's job.

use std::path::{Path, PathBuf};

use super::env::Env;
use super::model::ConfigError;
use super::paths::{absolutize, normalize};

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
