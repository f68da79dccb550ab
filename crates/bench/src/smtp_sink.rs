//! A mail relay on loopback that accepts every message and keeps only their number: P5's server
//! delivers its security emails over SMTP, as in production, rather than into the development
//! outbox (a file per email, whose creation in one directory is the file system's cost, not
//! Latchkey's). The count lets the benchmark check that every recovery-code sign-in sent its email.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub struct SmtpSink {
    pub port: u16,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, counter.clone()));
            }
        });
        Ok(Self { port, received, task })
    }

    /// Messages accepted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client's conversation: every command is accepted; a message ends at a line with a dot.
async fn session(stream: TcpStream, received: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 bench sink\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 bench sink\r\n",
            "DATA" => {
                if write.write_all(b"354 end with a dot\r\n").await.is_err() || !read_message(&mut lines).await {
                    return;
                }
                received.fetch_add(1, Ordering::SeqCst);
                b"250 accepted\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 ok\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Reads up to the line with a lone dot; false when the connection ended first.
async fn read_message(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == ".\r\n" || line == ".\n" => return true,
            Ok(_) => {}
        }
    }
}
