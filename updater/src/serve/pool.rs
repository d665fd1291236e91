//! Connections: one acceptor thread, a fixed pool of worker threads and a
//! bounded queue between them. A worker owns one connection at a time
//! (plain TCP or rustls TLS), reads requests with read and write timeouts
//! (a slow or silent client is dropped), and closes an idle keep-alive
//! connection at once when other connections are waiting. When the queue
//! is full a new connection gets a 503 `TOOMANYREQUESTS` and is closed.
//! Memory is bounded: each worker holds a 16 KiB read buffer and the two
//! 64 KiB blob buffers, whatever the number of clients.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{self, error_response, read_head, HeadError};
use super::routes::{handle, After, Shared};

/// Timeouts and sizes of the pool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub queue: usize,
    /// A whole request head must arrive within this.
    pub head_deadline: Duration,
    /// One read or write may block at most this long.
    pub io_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            workers: 32,
            queue: 128,
            head_deadline: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            idle: Duration::from_secs(15),
        }
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => &t.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(b),
            Self::Tls(t) => t.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(b),
            Self::Tls(t) => t.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(t) => t.flush(),
        }
    }
}

/// A reader and writer over one connection: reads through the buffer,
/// writes straight to the connection.
struct Both(BufReader<Conn>);
impl Write for Both {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

/// Runs the server on `listener` until the process ends.
pub fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    limits: Limits,
) -> io::Result<()> {
    let (tx, rx): (SyncSender<TcpStream>, Receiver<TcpStream>) = sync_channel(limits.queue);
    let rx = Arc::new(Mutex::new(rx));
    let waiting = Arc::new(AtomicUsize::new(0));
    for i in 0..limits.workers.max(1) {
        let (rx, sh, tls, waiting) = (rx.clone(), shared.clone(), tls.clone(), waiting.clone());
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .stack_size(256 << 10)
            .spawn(move || loop {
                let next = match rx.lock() {
                    Ok(g) => g.recv(),
                    Err(_) => return,
                };
                let Ok(s) = next else { return };
                waiting.fetch_sub(1, Ordering::SeqCst);
                serve_conn(s, tls.as_ref(), &sh, limits, &waiting);
            })?;
    }
    for s in listener.incoming() {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                eprintln!("stoa-updater: serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        waiting.fetch_add(1, Ordering::SeqCst);
        match tx.try_send(s) {
            Ok(()) => {}
            Err(TrySendError::Full(mut s)) => {
                waiting.fetch_sub(1, Ordering::SeqCst);
                // plain only: a TLS client would need a handshake first
                if tls.is_none() {
                    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                    let (mut h, body) =
                        error_response(503, "TOOMANYREQUESTS", "too many connections; retry");
                    h.close = true;
                    let mut out = h.with("Retry-After", "1").to_bytes();
                    out.extend_from_slice(&body);
                    let _ = s.write_all(&out);
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("every worker stopped"))
            }
        }
    }
    Ok(())
}

fn serve_conn(
    s: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
    sh: &Shared,
    limits: Limits,
    waiting: &AtomicUsize,
) {
    let peer = s
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(limits.io_timeout));
    let conn = match tls {
        None => Conn::Plain(s),
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(c) => Conn::Tls(Box::new(rustls::StreamOwned::new(c, s))),
            Err(e) => {
                eprintln!("stoa-updater: serve: TLS: {e}");
                return;
            }
        },
    };
    let mut io = Both(BufReader::with_capacity(http::MAX_HEAD, conn));
    loop {
        // idle: wait for the next request in short steps, and give the
        // worker up when other connections wait
        let poll = Duration::from_millis(200);
        let _ = io.0.get_ref().tcp().set_read_timeout(Some(poll));
        let idle_since = Instant::now();
        loop {
            match io.0.fill_buf() {
                Ok([]) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if waiting.load(Ordering::SeqCst) > 0 || idle_since.elapsed() > limits.idle {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        let _ =
            io.0.get_ref()
                .tcp()
                .set_read_timeout(Some(limits.io_timeout));
        let req = match read_head(&mut io.0, limits.head_deadline) {
            Ok(r) => r,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
            Err(HeadError::Bad(status, why)) => {
                let (mut h, body) = error_response(status, "UNSUPPORTED", why);
                h.close = true;
                let _ = http::write_small(&mut io, h, &body, false);
                return;
            }
        };
        let started = Instant::now();
        let res = handle(sh, &req, &mut io);
        if sh.verbose {
            eprintln!(
                "stoa-updater: serve: {peer} {} {} {} ({} ms)",
                req.method,
                stoa_format::text::escape(&req.target),
                match &res {
                    Ok(_) => "answered".to_owned(),
                    Err(e) => format!("client gone: {e}"),
                },
                started.elapsed().as_millis()
            );
        }
        match res {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) | Err(_) => return,
        }
    }
}
