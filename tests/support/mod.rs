//! Example servers as real processes for the end-to-end tests: the
//! example's executable, built once per test process, and a running copy
//! that reports its address and is killed when dropped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The executable of the root package's example `name`, built with the
/// profile the tests were built with.
///
/// Always asks cargo, rather than trusting a file already in
/// `target/*/examples/`: `cargo test --test NAME` does not build examples,
/// so the file may be missing or older than the sources. After a plain
/// `cargo test` cargo finds it fresh and returns at once. Cargo releases
/// the build directory's lock before it runs test executables, so this
/// nested build does not wait for the `cargo test` that started us.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    // Held during the build: tests running in parallel wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let path = build_example(name).unwrap_or_else(|why| panic!("{why}"));
    built.insert(name.to_owned(), path.clone());
    path
}

fn build_example(name: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(&cargo);
    command.args(["build", "--quiet", "--message-format=json-render-diagnostics", "--example", name]);
    command.arg("--manifest-path").arg(&manifest);
    // The CI's `cargo test --workspace --all-features` has built this very
    // executable already, with these features: there this is a no-op. A
    // narrower `cargo test --test NAME` builds the few crates whose
    // features differ once more, the first time only.
    command.args(["--workspace", "--all-features"]);
    if let Some(profile) = test_profile() {
        command.args(["--profile", &profile]);
    }
    // Cargo gives this process the variables it sets for the crate under
    // test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Some build scripts
    // (ring's) ask to rerun when those change, so passing them on would
    // rebuild ring and all above it here, and again in the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"].contains(&name);
        if set_by_cargo {
            command.env_remove(name);
        }
    }
    let output = command.stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !output.status.success() {
        return Err(format!("`cargo build --example {name}` failed ({}); see its errors above", output.status));
    }
    // The JSON messages name the executable wherever the target directory is.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == name)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("`cargo build --example {name}` named no executable"))
}

/// The cargo profile of this test executable, from its directory
/// (`target/debug/deps`, `target/release/deps`, `target/PROFILE/deps`);
/// `None` for the default `dev` profile.
fn test_profile() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?.file_name()?.to_str()?.to_owned();
    match profile_dir.as_str() {
        "debug" => None,
        _ => Some(profile_dir),
    }
}

/// A running example server, killed when dropped (also when a test
/// panics), so no process outlives the test.
pub struct ServerProcess {
    child: Child,
    stderr_path: PathBuf,
    listening: Option<tokio::sync::oneshot::Receiver<Result<String, String>>>,
}

impl ServerProcess {
    /// Starts `binary` with `args`; its standard error goes to `stderr_path`,
    /// shown when it fails to start.
    pub fn spawn(binary: &Path, args: &[&str], stderr_path: PathBuf) -> Self {
        let stderr = File::create(&stderr_path).expect("create the server's stderr file");
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // A plain thread: the line may come before any runtime polls, and
        // reading on after it keeps the pipe from filling up.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("listening on http://")
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(Ok(address.trim().to_owned()));
                }
            }
            if let Some(sender) = sender {
                let _ = sender.send(Err("it closed its output without printing `listening on`".to_owned()));
            }
        });
        Self { child, stderr_path, listening: Some(receiver) }
    }

    /// Resolves to `http://ADDR` once the server prints `listening on
    /// http://ADDR`; panics with its error output when it exits first or
    /// stays silent for `timeout`. Owns what it needs, so that several
    /// servers can be awaited at once, each from a task of its own.
    pub fn listening(&mut self, timeout: Duration) -> impl Future<Output = String> + Send + 'static {
        let receiver = self.listening.take().expect("listening() is called once");
        let stderr_path = self.stderr_path.clone();
        async move {
            let why = match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(Ok(address))) => return format!("http://{address}"),
                Ok(Ok(Err(why))) => why,
                Ok(Err(_)) => "its output reader stopped".to_owned(),
                Err(_) => format!("it printed no `listening on` within {timeout:?}"),
            };
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("the server did not start: {why}; its stderr:\n{stderr}");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
