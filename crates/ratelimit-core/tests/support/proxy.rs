//! A TCP proxy in front of a real server that can black-hole traffic
//! (connections stay open, nothing arrives), cut it (connections close,
//! new ones are refused) or hold the server's replies back for a while, as
//! failing networks and overloaded servers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    BlackHole,
    Cut,
}

pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    reply_delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watcher) = watch::channel(Mode::Forward);
        let reply_delay_ms = Arc::new(AtomicU64::new(0));
        let delay = reply_delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watcher.borrow() == Mode::Cut {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let (up, down) = (watcher.clone(), watcher.clone());
                let delay = delay.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = pump(cr, sw, up, None) => {}
                        () = pump(sr, cw, down, Some(delay)) => {}
                    }
                });
            }
        });
        Self { port, mode, reply_delay_ms }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Holds every reply from the server back for `delay` before passing it on.
    #[allow(dead_code)]
    pub fn delay_replies(&self, delay: Duration) {
        self.reply_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Copies one direction until either side closes or the proxy is cut;
/// while black-holed, reads and drops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    delay_ms: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    return;
                }
                let current = *mode.borrow();
                match current {
                    Mode::Forward => {
                        let delay = delay_ms.as_ref().map_or(0, |d| d.load(Ordering::SeqCst));
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    Mode::BlackHole => {}
                    Mode::Cut => return,
                }
            }
            changed = mode.changed() => {
                let cut = changed.is_err() || *mode.borrow() == Mode::Cut;
                if cut {
                    return;
                }
            }
        }
    }
}
