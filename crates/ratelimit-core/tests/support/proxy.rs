//! A TCP proxy in front of a real server that can black-hole traffic
//! (connections stay open, nothing arrives) or cut it (connections close,
//! new ones are refused), as failing networks and servers do.

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
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watcher) = watch::channel(Mode::Forward);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watcher.borrow() == Mode::Cut {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let (up, down) = (watcher.clone(), watcher.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = pump(cr, sw, up) => {}
                        () = pump(sr, cw, down) => {}
                    }
                });
            }
        });
        Self { port, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies one direction until either side closes or the proxy is cut;
/// while black-holed, reads and drops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
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
