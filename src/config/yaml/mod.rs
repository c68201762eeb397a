//! Reading the `litestream.yml`-shaped config file into a [`ConfigFile`](super::ConfigFile):
//! the file as a whole (`file`), its `dbs:` entries (`db`), one replica (`replica`) from its
//! settings as written (`fields`), the names of an entry's replicas (`names`), its encryption
//! keys (`age`), the lifecycle keys (`lifecycle`), YAML merge keys (`merge`) and single
//! nodes (`read`), once the text is within the bounds on size, aliases and nesting
//! (`limits`). Takes the file's text and an [`Env`](super::Env); reads no file and no process
//! state. Every error names the file and the key path (or line); no error or warning echoes a
//! secret. Only declarations and the re-exports live here.

mod age;
mod db;
mod fields;
mod file;
mod lifecycle;
mod limits;
mod merge;
mod names;
mod read;
mod replica;
mod requests;

pub use file::parse_config_file;
pub(super) use limits::{too_large, MAX_CONFIG_BYTES};
