//! Connections: one acceptor thread, a fixed pool of worker threads and a
//! bounded queue between them. A worker owns one connection at a time
//! (plain TCP or rustls TLS), reads requests with read and write timeouts
//! (a slow or silent client is dropped; a request head must be whole within
//! the head deadline), and closes an idle keep-alive connection at once
//! when other connections are waiting. Bytes that are not HTTP are refused
//! at once: a TLS ClientHello on the plain port gets a 400 instead of a
//! wait (a client that tries `https://` first, as skopeo and containerd do
//! for an insecure registry, falls back to `http://` without waiting out
//! its TLS handshake timeout), and a plain request on the TLS port a plain
//! 400 before any handshake. When the queue
//! is full a new connection gets a 503 `TOOMANYREQUESTS` and is closed.
//! Memory is bounded: each worker holds a 16 KiB read buffer and the two
//! 64 KiB blob buffers, whatever the number of clients.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{self, error_response, read_head, HeadError, TLS_HANDSHAKE};
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
    // a second handle on the socket, to set its read timeout while the
    // reader owns the stream
    let Ok(ctl) = s.try_clone() else { return };
    let conn = match tls {
        None => Conn::Plain(s),
        Some(cfg) => {
            // the client's first byte says whether it speaks TLS: a plain
            // HTTP request gets a plain answer at once, not a TLS alert
            let mut first = [0u8; 1];
            if !wait_idle(&ctl, limits, waiting, &mut || s.peek(&mut first)) {
                return;
            }
            if first[0] != TLS_HANDSHAKE {
                if sh.verbose {
                    eprintln!("stoa-updater: serve: {peer}: plain HTTP on the TLS port; refused");
                }
                let (mut h, body) = error_response(
                    400,
                    "UNSUPPORTED",
                    "this registry is served over TLS: use https://",
                );
                h.close = true;
                let mut s = s;
                let _ = http::write_small(&mut s, h, &body, false);
                linger_close(&ctl);
                return;
            }
            match rustls::ServerConnection::new(cfg.clone()) {
                Ok(c) => Conn::Tls(Box::new(rustls::StreamOwned::new(c, s))),
                Err(e) => {
                    eprintln!("stoa-updater: serve: TLS: {e}");
                    return;
                }
            }
        }
    };
    let mut io = Both(BufReader::with_capacity(http::MAX_HEAD, conn));
    loop {
        // idle: wait for the next request (the TLS handshake, for the
        // first) in short steps, and give the worker up when other
        // connections wait
        if !wait_idle(&ctl, limits, waiting, &mut || {
            io.0.fill_buf().map(<[u8]>::len)
        }) {
            return;
        }
        let req = match read_head(&mut io.0, limits.head_deadline, &mut |left| {
            let _ = ctl.set_read_timeout(Some(left.min(limits.io_timeout)));
        }) {
            Ok(r) => r,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
            Err(HeadError::Bad(status, why)) => {
                if sh.verbose {
                    eprintln!("stoa-updater: serve: {peer}: bad request head ({status}): {why}");
                }
                let (mut h, body) = error_response(status, "UNSUPPORTED", why);
                h.close = true;
                let _ = http::write_small(&mut io, h, &body, false);
                linger_close(&ctl);
                return;
            }
        };
        let _ = ctl.set_read_timeout(Some(limits.io_timeout));
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

/// Waits, in steps of [`POLL`], until `ready` (a read or peek on the
/// connection) has bytes: `true`. `false`: the client closed, failed, or
/// stayed idle past `limits.idle`, or other connections wait for a worker
/// (an idle connection gives its worker up at once then).
fn wait_idle(
    ctl: &TcpStream,
    limits: Limits,
    waiting: &AtomicUsize,
    ready: &mut dyn FnMut() -> io::Result<usize>,
) -> bool {
    let _ = ctl.set_read_timeout(Some(POLL));
    let idle_since = Instant::now();
    loop {
        match ready() {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if waiting.load(Ordering::SeqCst) > 0 || idle_since.elapsed() > limits.idle {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// How long one idle wait step blocks before the worker looks whether
/// other connections wait.
const POLL: Duration = Duration::from_millis(200);

/// Closes after a refusal so the client reads it: no more writes, then
/// what the client still sends is read and dropped (at most 64 KiB, 1 s),
/// as closing with unread bytes would reset the connection and could
/// discard the answer before the client saw it.
fn linger_close(ctl: &TcpStream) {
    let _ = ctl.shutdown(std::net::Shutdown::Write);
    let _ = ctl.set_read_timeout(Some(Duration::from_millis(250)));
    let t = Instant::now();
    let (mut buf, mut left) = ([0u8; 4096], 64usize << 10);
    while left > 0 && t.elapsed() < Duration::from_secs(1) {
        match (&*ctl).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
