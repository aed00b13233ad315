//! Real `redis-server` processes for tests: standalone, a 3-primary
//! Cluster, and a primary + replica + Sentinel, each on free ports in its
//! own temporary directory, killed when dropped (also when a test fails).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing server must fail the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("RATELIMIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Returns false (after saying why) when redis-server is missing and the
/// test may be skipped; panics when it is missing but required.
pub fn redis_available() -> bool {
    let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        assert!(!services_required(), "redis-server is not on PATH and RATELIMIT_REQUIRE_SERVICES=1");
        eprintln!("skipped: redis-server is not on PATH (set RATELIMIT_REQUIRE_SERVICES=1 to fail instead)");
    }
    found
}

pub fn free_port() -> u16 {
    // Cluster buses use port + 10000, so stay below 55535.
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 {
            return port;
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratelimit-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One redis-server process.
pub struct Server {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            dir: temp_dir(&format!("redis-{port}")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_ping(self.port);
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cli(port, &["PING"]).trim() == "PONG" {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer within 10 s");
}

/// A Cluster of three primaries (and one replica each when asked).
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    pub fn start(replicas: bool) -> Self {
        let count = if replicas { 6 } else { 3 };
        let nodes: Vec<Server> = (0..count)
            .map(|_| Server::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend(["--cluster-replicas".into(), if replicas { "1" } else { "0" }.into(), "--cluster-yes".into()]);
        let output = Command::new("redis-cli").args(&args).output().expect("redis-cli --cluster create");
        assert!(output.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&output.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }

    pub fn startup_nodes(&self) -> Vec<(String, u16)> {
        self.nodes.iter().map(|n| ("127.0.0.1".to_owned(), n.port)).collect()
    }

    /// Ports of the primaries and how many keys each holds.
    pub fn keys_per_primary(&self) -> Vec<(u16, u64)> {
        self.nodes
            .iter()
            .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
            .map(|n| (n.port, n.cli(&["DBSIZE"]).trim().parse().unwrap_or(0)))
            .collect()
    }
}

/// A primary, one replica and one Sentinel watching them as `mymaster`.
pub struct SentinelSet {
    pub primary: Server,
    pub replica: Server,
    pub sentinel: Option<Child>,
    pub sentinel_port: u16,
    dir: PathBuf,
}

pub const SERVICE: &str = "mymaster";

impl SentinelSet {
    pub fn start() -> Self {
        let primary = Server::start(&[]);
        let replica = Server::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        let sentinel_port = free_port();
        let dir = temp_dir(&format!("sentinel-{sentinel_port}"));
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SERVICE} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir.display(),
                primary.port
            ),
        )
        .unwrap();
        let sentinel = spawn_sentinel(&config);
        wait_for_ping(sentinel_port);
        let set = Self { primary, replica, sentinel: Some(sentinel), sentinel_port, dir };
        set.wait_until_replica_synced();
        set
    }

    fn wait_until_replica_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port Sentinel currently names as the primary.
    pub fn primary_port(&self) -> u16 {
        let out = cli(self.sentinel_port, &["SENTINEL", "get-master-addr-by-name", SERVICE]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }
}

fn spawn_sentinel(config: &Path) -> Child {
    Command::new("redis-server")
        .arg(config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis sentinel")
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        if let Some(mut child) = self.sentinel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
