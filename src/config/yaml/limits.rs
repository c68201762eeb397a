//! Bounds on the config file's YAML, checked on the parser's event stream before anything is
//! built from it: the file's size, how far aliases expand the document, how deep it nests,
//! and NUL bytes. yaml-rust2's loader copies an aliased node at every alias, so a few hundred
//! bytes of nested aliases (a "billion laughs") would take all the host's memory, and it
//! builds nested nodes by recursion, so a deeply nested file would overflow the stack: both
//! abort the application that loaded the extension. Builds nothing and reads no file; every
//! error names the file and where in it.

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::Marker;
use yaml_rust2::Event;

use crate::config::model::ConfigError;

/// The largest config file read: a `litestream.yml` for thousands of databases is far
/// smaller, and everything after is built in memory from it.
pub(crate) const MAX_CONFIG_BYTES: usize = 1 << 20;
/// How many values aliases may add to the document, all aliases together (each alias adds
/// the values of the node it names). Thousands of `<<: *defaults` stay well within it.
pub(super) const MAX_ALIAS_VALUES: u64 = 100_000;
/// How deeply mappings and lists may nest. A config file needs about six levels.
pub(super) const MAX_DEPTH: usize = 64;

/// Refuses text that is too large, holds a NUL byte, nests too deeply or whose aliases
/// expand too far. Other YAML errors are the loader's to report.
pub(super) fn check_limits(path: &Path, text: &str) -> Result<(), ConfigError> {
    let refuse = |reason: String| ConfigError::Yaml {
        path: path.to_path_buf(),
        reason,
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large(path, text.len() as u64));
    }
    // The scanner takes a raw NUL for the end of the text: whatever follows it would be
    // silently ignored.
    if let Some(i) = text.find('\0') {
        return Err(refuse(format!(
            "{}: a NUL byte; refusing the file",
            at_text(text, i)
        )));
    }
    let mut parser = Parser::new_from_str(text);
    let mut count = Expansion::default();
    loop {
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(()); // a syntax error: the loader reports it
        };
        if event == Event::StreamEnd {
            return Ok(());
        }
        count
            .event(&event)
            .map_err(|e| refuse(format!("{}: {e}", at(&mark))))?;
    }
}

/// The error for a file over [`MAX_CONFIG_BYTES`].
pub(crate) fn too_large(path: &Path, len: u64) -> ConfigError {
    ConfigError::ReadConfigFile {
        path: path.to_path_buf(),
        reason: format!(
            "it is {len} bytes, more than a config file may be ({} KiB); refusing it",
            MAX_CONFIG_BYTES >> 10
        ),
    }
}

/// The nodes of the document as the loader would build them, counted from its events.
#[derive(Default)]
struct Expansion {
    /// Values each anchored node stands for, by anchor id (ids are unique in a stream).
    sizes: HashMap<usize, u64>,
    /// The mappings and lists open around the current event: (anchor id, values so far).
    open: Vec<(usize, u64)>,
    /// Values added by aliases so far.
    aliased: u64,
}

impl Expansion {
    fn event(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::Scalar(value, _, anchor, _) => {
                if value.contains('\0') {
                    return Err("a value holds a NUL byte (\\0); refusing the file".into());
                }
                self.close(*anchor, 1);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(format!(
                        "mappings and lists nest more than {MAX_DEPTH} levels deep; refusing the file"
                    ));
                }
                self.open.push((*anchor, 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, values)) = self.open.pop() {
                    self.close(anchor, values);
                }
            }
            Event::Alias(id) => {
                // An alias to a node still open (or to nothing) loads as a single bad value.
                let values = self.sizes.get(id).copied().unwrap_or(1);
                self.aliased = self.aliased.saturating_add(values);
                if self.aliased > MAX_ALIAS_VALUES {
                    return Err(format!(
                        "aliases (`*name`) expand the document by more than {MAX_ALIAS_VALUES} values (an alias bomb?); refusing the file"
                    ));
                }
                self.close(0, values);
            }
            _ => {}
        }
        Ok(())
    }

    /// A node of `values` values is complete: remember it under its anchor and count it in
    /// the node around it.
    fn close(&mut self, anchor: usize, values: u64) {
        if anchor > 0 {
            self.sizes.insert(anchor, values);
        }
        if let Some((_, around)) = self.open.last_mut() {
            *around = around.saturating_add(values);
        }
    }
}

fn at(mark: &Marker) -> String {
    format!("line {} column {}", mark.line(), mark.col() + 1)
}

/// `at` for a byte offset into `text`.
fn at_text(text: &str, i: usize) -> String {
    let before = &text[..i];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line} column {col}")
}
