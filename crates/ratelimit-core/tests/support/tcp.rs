//! This process's TCP connections as the Linux kernel reports them in
//! `/proc/net/tcp`: which options a client library really set on its
//! sockets, seen from outside the library.

#![allow(dead_code)]

use std::collections::HashSet;
use std::time::Duration;

/// One established connection of this process.
#[derive(Debug)]
pub struct Connection {
    /// The socket's inode: which connection this is, across samples.
    pub inode: String,
    pub remote_port: u16,
    /// When the keepalive timer runs, the time left until it fires.
    pub keepalive: Option<Duration>,
}

/// The established IPv4 connections of this process to any of `ports`;
/// `None` where `/proc` cannot be read (not Linux).
pub fn connections_to(ports: &[u16]) -> Option<Vec<Connection>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let own = own_socket_inodes()?;
    let ticks_per_second = clock_ticks_per_second();
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        if fields.len() < 10 || fields[3] != "01" {
            continue;
        }
        let Some(remote_port) = fields[2].rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok()) else {
            continue;
        };
        if !ports.contains(&remote_port) || !own.contains(fields[9]) {
            continue;
        }
        let (timer, when) = fields[5].split_once(':').unwrap_or(("00", "0"));
        // Timer 2 on an established socket is the keepalive timer
        // (`sk_timer`); `when` is in clock ticks. While data is in flight
        // the retransmit timer (1) shows instead, so callers sample again.
        let keepalive = (timer == "02").then(|| {
            let ticks = u64::from_str_radix(when, 16).unwrap_or(0);
            Duration::from_millis(ticks * 1_000 / ticks_per_second)
        });
        found.push(Connection { inode: fields[9].to_owned(), remote_port, keepalive });
    }
    Some(found)
}

/// The inodes of the sockets this process holds open.
fn own_socket_inodes() -> Option<HashSet<String>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']')) {
            inodes.insert(inode.to_owned());
        }
    }
    Some(inodes)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}
