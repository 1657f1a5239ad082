//! Running an example as a separate process, for the tests of its command-line contract.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};

/// The built example `name` (`cargo test` builds the examples next to the test binaries).
pub fn binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("the test binary's path");
    deps.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name)
}

/// `child`'s stdout (which it must have piped), line by line, read on a thread of its own so
/// that every wait for a line can have a deadline.
pub fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
