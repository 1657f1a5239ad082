//! Running an example as a separate process, for the tests of its command-line contract.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};

/// The built example `name`. A whole `cargo test` builds the examples next to the test
/// binaries; a run of one test file (`--test gate_server`) does not, and would run whatever an
/// earlier build left there. So a binary missing, or older than its source or the library's,
/// fails the test, naming the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("the test binary's path");
    let path = deps
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    let build = "build it with `cargo build --examples --all-features`, or run the whole \
                 `cargo test --all-features`";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("example {name} is not built ({e}): {build}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        root.join("Cargo.toml"),
        root.join("examples").join(format!("{name}.rs")),
    ];
    rust_files(&root.join("src"), &mut sources);
    for source in sources {
        let changed = std::fs::metadata(&source).and_then(|m| m.modified());
        if changed.is_ok_and(|changed| changed > built) {
            panic!("example {name} is older than {}: {build}", source.display());
        }
    }
    path
}

/// The `.rs` files under `dir`, at any depth.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
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

/// What the `simulate` example prints on stderr for the deployment file `file`, after checking
/// that it ran the file to its end (exit status 0).
#[allow(
    dead_code,
    reason = "used by the tests of `simulate`, not by every test file that runs an example"
)]
pub fn simulate_stderr(file: &str) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("deploy.yml");
    std::fs::write(&path, file).expect("the file written");
    let out = std::process::Command::new(binary("simulate"))
        .arg(&path)
        .output()
        .expect("the example run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}
