//! A loopback HTTP/1.1 peer on a raw socket that misbehaves on purpose, which wiremock cannot:
//! it resets or closes a connection mid-exchange, or cuts a response body short.
#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the peer does with one connection, after reading the whole request.
#[derive(Debug, Clone, Copy)]
pub enum Turn {
    /// Resets the connection (RST) without answering.
    Reset,
    /// Closes the connection (FIN) without answering.
    Close,
    /// Writes these bytes verbatim, then closes the connection.
    Write(&'static str),
}

/// A 202 with an empty body, closing the connection.
pub const ACCEPTED: &str =
    "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A 200 promising 100 body bytes and sending 7 before hanging up.
pub const OK_CUT_SHORT: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"ok\":";

/// A 503 asking to come back in 7 seconds, promising 100 body bytes and sending 9 before hanging
/// up.
pub const UNAVAILABLE_CUT_SHORT: &str = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\n\
     content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"busy\":";

/// A 200 with an empty body, closing the connection.
pub const OK_EMPTY: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Not an HTTP answer at all.
pub const GARBAGE: &str = "SMTP ready\r\n\r\n";

/// A running peer: its base URL and how many connections it has accepted.
pub struct RawPeer {
    pub base: String,
    accepted: Arc<AtomicUsize>,
}

impl RawPeer {
    /// Serves `script`, one turn per accepted connection; the last turn repeats.
    pub async fn start(script: &[Turn]) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let script = script.to_vec();
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let turn = script[n.min(script.len() - 1)];
                tokio::spawn(serve(stream, turn));
            }
        });
        Self { base, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, turn: Turn) {
    read_request(&mut stream).await;
    match turn {
        Turn::Reset => stream.set_zero_linger().unwrap(),
        Turn::Close => {}
        Turn::Write(bytes) => {
            stream.write_all(bytes.as_bytes()).await.unwrap();
            stream.flush().await.unwrap();
        }
    }
    drop(stream);
}

/// Reads the head and a `content-length` body, so that closing never discards unread bytes
/// (which would turn a close into a reset).
async fn read_request(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before sending a whole head");
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before sending the whole body");
        seen.extend_from_slice(&buf[..n]);
    }
}
