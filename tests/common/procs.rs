//! Several host processes on the databases of one scratch directory, all replicating to
//! `file://<dir>/replicas` and logging to stderr (shown with a failure), some of them kept
//! running and steered line by line (`Timed`: with a deadline on each line, so a process
//! that hangs fails the test). Included with `#[path = "common/procs.rs"] mod procs;`
//! next to `mod common;`.
#![allow(dead_code)]

use crate::common::{load_path, python_loaded, spawn_python_loaded, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, ExitStatus, Output};
use std::time::Duration;

pub struct Procs {
    pub dir: TempDir,
    /// The replica of the directory's databases: `file://<dir>/replicas`.
    pub url: String,
    env: Vec<(String, String)>,
}

impl Procs {
    /// A new scratch directory `name`; every process gets `REPLICA_URL`, `REPLICA_TEST_LIB`,
    /// `REPLICA_LOG=stderr` and `extra`.
    pub fn new(name: &str, extra: &[(&str, &str)]) -> Procs {
        let dir = TempDir::new(name);
        let url = format!("file://{}", dir.join("replicas").display());
        let mut env = vec![
            ("REPLICA_URL".to_string(), url.clone()),
            ("REPLICA_TEST_LIB".to_string(), load_path()),
            ("REPLICA_LOG".to_string(), "stderr".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Procs { dir, url, env }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Starts `body` (after `PY_LOAD`) in the scratch directory, to be steered.
    pub fn spawn(&self, body: &str) -> Steered {
        self.spawn_in(self.dir.path(), body)
    }

    /// Starts `body` (after `PY_LOAD`) in `cwd`, to be steered.
    pub fn spawn_in(&self, cwd: &Path, body: &str) -> Steered {
        Steered::new(spawn_python_loaded(body, cwd, &self.env()))
    }

    /// Runs `body` (after `PY_LOAD`) in the scratch directory to the end.
    pub fn python(&self, body: &str) -> Output {
        python_loaded(body, self.dir.path(), &self.env())
    }
}

/// A running process steered line by line: lines to its stdin, its stdout read a line at
/// a time.
pub struct Steered {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl Steered {
    pub fn new(mut child: Child) -> Steered {
        let out = BufReader::new(child.stdout.take().unwrap());
        Steered { child, out }
    }

    /// The next line it prints, with its newline; empty once it has closed its stdout.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Everything it prints until it exits, and how it exited.
    pub fn finish(&mut self) -> (String, ExitStatus) {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        (rest, self.child.wait().unwrap())
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A running process steered line by line whose lines are read with a deadline, so that a
/// process that hangs fails the test instead of blocking it; killed when dropped.
pub struct Timed {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Timed {
    /// Takes `child`'s stdout (piped), read on a thread of its own.
    pub fn new(mut child: Child) -> Timed {
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Timed { child, lines }
    }

    /// The next line it prints (without its newline); kills it and fails the test when
    /// none comes within `limit` or it exits first. `what` names the line expected.
    pub fn line(&mut self, what: &str, limit: std::time::Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(l) => l,
            Err(e) => {
                self.kill();
                panic!(
                    "no {what} line from the process within {limit:?} ({e:?}); its stderr is above"
                );
            }
        }
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Starts Debian's python3 in `dir` running `PY_LOAD`, `PY_WAIT_FOR` and `body`, which
    /// prints `ready` once it has opened what it steers.
    pub fn ready(dir: &Path, body: &str, env: &[(String, String)], limit: Duration) -> Timed {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let script = format!("{}{body}", crate::common::PY_WAIT_FOR);
        let mut p = Timed::new(spawn_python_loaded(&script, dir, &env));
        assert_eq!(p.line("ready", limit), "ready");
        p
    }

    /// Sends `cmd`; returns the words of the answer after its first, which must be `want`.
    pub fn ask(&mut self, cmd: &str, want: &str, limit: Duration) -> Vec<String> {
        self.send(cmd);
        let line = self.line(want, limit);
        let mut words = line.split_whitespace().map(str::to_string);
        assert_eq!(words.next().as_deref(), Some(want), "{cmd}: got {line:?}");
        words.collect()
    }

    /// Waits (at most `limit`) for it to exit on its own; how it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20)); // the step of the deadline loop
        }
    }

    /// SIGKILL (if it still runs), and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.kill();
    }
}
