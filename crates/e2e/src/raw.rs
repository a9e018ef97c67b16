//! Raw TCP clients: requests written byte for byte (what a hostile or broken client sends,
//! which a well-behaved HTTP client library refuses to produce), answers read as text.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::DEADLINE;

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Head and body as received.
    pub text: String,
}

impl RawAnswer {
    /// The body (after the head), parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self
            .text
            .split_once("\r\n\r\n")
            .map_or(&*self.text, |(h, _)| h);
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Writes `request` on a new connection and reads until the server closes it (send
/// `Connection: close`), failing after [`DEADLINE`].
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawAnswer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_to_close(&mut s).await
}

/// Reads until the peer closes (a reset after the answer counts as a close).
pub async fn read_to_close(s: &mut TcpStream) -> RawAnswer {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server did not close the connection in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawAnswer { status, text }
}
