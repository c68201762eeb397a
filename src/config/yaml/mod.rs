//! Reading the `litestream.yml`-shaped config file into a [`ConfigFile`](super::ConfigFile):
//! the file as a whole (`file`), its `dbs:` entries (`db`), one replica (`replica`) from its
//! settings as written (`fields`), the lifecycle keys (`lifecycle`), YAML merge keys (`merge`)
//! and single nodes (`read`). Takes the file's text and an [`Env`](super::Env); reads no file
//! and no process state. Every error names the file and the key path; no error or warning
//! echoes a secret. Only declarations and the re-export live here.

mod db;
mod fields;
mod file;
mod lifecycle;
mod merge;
mod read;
mod replica;

pub use file::parse_config_file;
