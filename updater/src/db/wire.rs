//! A small blocking PostgreSQL client: the frontend/backend protocol 3.0
//! over TCP, a unix socket or TLS (rustls), with the message codec of
//! `postgres-protocol`. It speaks the simple query protocol only: a text is
//! sent as ONE `Query` message and parsed by the server alone — no
//! client-side script interpreter (psql) ever reads it, so nothing in it
//! (a backslash, a client encoding switch) can run anything on this host.
//!
//! Startup pins `client_encoding=UTF8`; the server reports every later
//! change (`ParameterStatus`), which [`Conn::client_encoding`] exposes so
//! the caller can put it back before sending more. Authentication:
//! trust, cleartext (only over TLS or a unix socket), md5, SCRAM-SHA-256.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;

use super::conninfo::{ConnInfo, Host, SslMode};

/// A server message larger than this is refused (our answers are small).
const MAX_MESSAGE: usize = 64 << 20;

/// What went wrong talking to the server.
#[derive(Debug)]
pub enum PgError {
    /// The server's `ErrorResponse`.
    Server(Box<ServerError>),
    /// Connecting, TLS, authentication, or a broken protocol exchange.
    Client(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(e) => e.fmt(f),
            Self::Client(m) => f.write_str(m),
        }
    }
}

fn client(m: impl Into<String>) -> PgError {
    PgError::Client(m.into())
}

/// The fields of an `ErrorResponse` we report.
#[derive(Debug, Clone, Default)]
pub struct ServerError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the query text (`P`).
    pub position: Option<usize>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

fn server_error(fields: ErrorFields<'_>) -> ServerError {
    let mut e = ServerError::default();
    let mut fields = fields;
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = v.parse().ok(),
            _ => {}
        }
    }
    e
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(t),
            Self::Unix(s) => s.set_read_timeout(t),
            Self::Tls(s) => s.sock.set_read_timeout(t),
        }
    }
}

/// The rows and the outcome of one simple query.
#[derive(Debug, Default)]
pub struct QueryResult {
    /// Every data row of every statement, as text (None: SQL NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

/// One open session.
pub struct Conn {
    stream: Stream,
    buf: BytesMut,
    params: BTreeMap<String, String>,
    /// The transaction status of the last `ReadyForQuery`: `I`dle, in a
    /// `T`ransaction, or in a failed one (`E`).
    pub tx_status: u8,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("tx_status", &(self.tx_status as char))
            .finish_non_exhaustive()
    }
}

fn tcp(ci: &ConnInfo, host: &str) -> Result<TcpStream, PgError> {
    let addrs = (host, ci.port)
        .to_socket_addrs()
        .map_err(|e| client(format!("resolve {host}: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, ci.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(client(format!(
        "connect to {host}:{}: {}",
        ci.port,
        last.map(|e| e.to_string())
            .unwrap_or_else(|| "no address".into())
    )))
}

impl Conn {
    /// Connects, negotiates TLS as `sslmode` says, starts the session with
    /// `client_encoding=UTF8` and authenticates.
    pub fn connect(ci: &ConnInfo) -> Result<Self, PgError> {
        let stream = match &ci.host {
            Host::Socket(dir) => {
                let path = dir.join(format!(".s.PGSQL.{}", ci.port));
                let s = UnixStream::connect(&path)
                    .map_err(|e| client(format!("connect to {}: {e}", path.display())))?;
                Stream::Unix(s)
            }
            Host::Tcp(h) => {
                let mut s = tcp(ci, h)?;
                s.set_read_timeout(Some(ci.connect_timeout))
                    .map_err(|e| client(format!("socket: {e}")))?;
                if ci.sslmode == SslMode::Disable {
                    Stream::Tcp(s)
                } else {
                    let mut b = BytesMut::new();
                    frontend::ssl_request(&mut b);
                    s.write_all(&b)
                        .map_err(|e| client(format!("send SSLRequest: {e}")))?;
                    let mut answer = [0u8; 1];
                    s.read_exact(&mut answer)
                        .map_err(|e| client(format!("read SSLRequest answer: {e}")))?;
                    match answer[0] {
                        b'S' => {
                            let cfg = super::tls::client_config(ci).map_err(client)?;
                            let name = super::tls::server_name(ci).map_err(client)?;
                            let conn = rustls::ClientConnection::new(cfg.into(), name)
                                .map_err(|e| client(format!("TLS: {e}")))?;
                            let mut t = rustls::StreamOwned::new(conn, s);
                            // the handshake now, so a bad certificate is named as such
                            while t.conn.is_handshaking() {
                                t.conn
                                    .complete_io(&mut t.sock)
                                    .map_err(|e| client(format!("TLS handshake with {h}: {e}")))?;
                            }
                            Stream::Tls(Box::new(t))
                        }
                        b'N' if matches!(ci.sslmode, SslMode::Prefer | SslMode::Allow) => {
                            Stream::Tcp(s)
                        }
                        b'N' => {
                            return Err(client(format!(
                                "server {h} does not support TLS, and sslmode is {:?}",
                                ci.sslmode
                            )))
                        }
                        other => {
                            return Err(client(format!(
                                "unexpected answer {other:#04x} to SSLRequest"
                            )))
                        }
                    }
                }
            }
        };
        let secure = !matches!(stream, Stream::Tcp(_));
        let mut c = Self {
            stream,
            buf: BytesMut::with_capacity(8192),
            params: BTreeMap::new(),
            tx_status: b'I',
        };
        c.stream
            .set_read_timeout(Some(ci.connect_timeout))
            .map_err(|e| client(format!("socket: {e}")))?;
        let mut b = BytesMut::new();
        frontend::startup_message(
            [
                ("user", ci.user.as_str()),
                ("database", ci.dbname.as_str()),
                ("client_encoding", "UTF8"),
                ("application_name", ci.application_name.as_str()),
            ],
            &mut b,
        )
        .map_err(|e| client(format!("startup message: {e}")))?;
        c.send(&b)?;
        c.authenticate(ci, secure)?;
        // a migration may run for hours: no read timeout from here on
        c.stream
            .set_read_timeout(None)
            .map_err(|e| client(format!("socket: {e}")))?;
        if c.client_encoding() != "UTF8" {
            return Err(client(format!(
                "server did not accept client_encoding UTF8 (it says {:?})",
                c.client_encoding()
            )));
        }
        Ok(c)
    }

    fn send(&mut self, b: &[u8]) -> Result<(), PgError> {
        self.stream
            .write_all(b)
            .and_then(|_| self.stream.flush())
            .map_err(|e| client(format!("send to server: {e}")))
    }

    fn recv(&mut self) -> Result<Message, PgError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len > MAX_MESSAGE {
                    return Err(client(format!(
                        "server message of {len} bytes (more than {MAX_MESSAGE})"
                    )));
                }
            }
            match Message::parse(&mut self.buf) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(client(format!("unreadable server message: {e}"))),
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| client(format!("read from server: {e}")))?;
            if n == 0 {
                return Err(client("the server closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn authenticate(&mut self, ci: &ConnInfo, secure: bool) -> Result<(), PgError> {
        let need_password = || {
            ci.resolve_password().ok_or_else(|| {
                client(format!(
                    "the server asks a password for {:?} and none is set (URL, PGPASSWORD, passfile, ~/.pgpass)",
                    ci.user
                ))
            })
        };
        loop {
            match self.recv()? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    if !secure {
                        return Err(client(
                            "the server asks for a cleartext password over an unencrypted TCP connection; refused (use sslmode=require or better)",
                        ));
                    }
                    let pw = need_password()?;
                    let mut b = BytesMut::new();
                    frontend::password_message(pw.as_bytes(), &mut b)
                        .map_err(|e| client(format!("password message: {e}")))?;
                    self.send(&b)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = need_password()?;
                    let hash = md5_hash(ci.user.as_bytes(), pw.as_bytes(), body.salt());
                    let mut b = BytesMut::new();
                    frontend::password_message(hash.as_bytes(), &mut b)
                        .map_err(|e| client(format!("password message: {e}")))?;
                    self.send(&b)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut scram = false;
                    while let Ok(Some(m)) = mechs.next() {
                        scram |= m == SCRAM_SHA_256;
                    }
                    if !scram {
                        return Err(client(
                            "the server offers no SASL mechanism we speak (SCRAM-SHA-256)",
                        ));
                    }
                    let pw = need_password()?;
                    let mut s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                    let mut b = BytesMut::new();
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut b)
                        .map_err(|e| client(format!("SASL message: {e}")))?;
                    self.send(&b)?;
                    let cont = match self.recv()? {
                        Message::AuthenticationSaslContinue(c) => c,
                        Message::ErrorResponse(e) => {
                            return Err(PgError::Server(Box::new(server_error(e.fields()))))
                        }
                        _ => return Err(client("unexpected message during SCRAM")),
                    };
                    s.update(cont.data())
                        .map_err(|e| client(format!("SCRAM: {e}")))?;
                    let mut b = BytesMut::new();
                    frontend::sasl_response(s.message(), &mut b)
                        .map_err(|e| client(format!("SASL message: {e}")))?;
                    self.send(&b)?;
                    let fin = match self.recv()? {
                        Message::AuthenticationSaslFinal(f) => f,
                        Message::ErrorResponse(e) => {
                            return Err(PgError::Server(Box::new(server_error(e.fields()))))
                        }
                        _ => return Err(client("unexpected message during SCRAM")),
                    };
                    // proves the server knew the password too
                    s.finish(fin.data())
                        .map_err(|e| client(format!("SCRAM: the server's proof is wrong: {e}")))?;
                }
                Message::ErrorResponse(e) => {
                    return Err(PgError::Server(Box::new(server_error(e.fields()))))
                }
                Message::NoticeResponse(_) => {}
                _ => return Err(client(
                    "authentication method not supported (trust, password, md5, scram-sha-256 are)",
                )),
            }
        }
        loop {
            match self.recv()? {
                Message::ReadyForQuery(r) => {
                    self.tx_status = r.status();
                    return Ok(());
                }
                Message::ParameterStatus(p) => self.param(&p),
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ErrorResponse(e) => {
                    return Err(PgError::Server(Box::new(server_error(e.fields()))))
                }
                _ => return Err(client("unexpected message after authentication")),
            }
        }
    }

    fn param(&mut self, p: &postgres_protocol::message::backend::ParameterStatusBody) {
        if let (Ok(k), Ok(v)) = (p.name(), p.value()) {
            self.params.insert(k.to_owned(), v.to_owned());
        }
    }

    /// The session's `client_encoding` as the server last reported it.
    pub fn client_encoding(&self) -> &str {
        self.params
            .get("client_encoding")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Sends `text` as one simple `Query` message and reads to the next
    /// `ReadyForQuery`. A `COPY … FROM STDIN` is refused (`CopyFail`), a
    /// `COPY … TO STDOUT` read and dropped.
    pub fn query(&mut self, text: &str) -> Result<QueryResult, PgError> {
        let mut b = BytesMut::new();
        frontend::query(text, &mut b).map_err(|e| client(format!("query message: {e}")))?;
        self.send(&b)?;
        let mut out = QueryResult::default();
        let mut err = None;
        loop {
            match self.recv()? {
                Message::ReadyForQuery(r) => {
                    self.tx_status = r.status();
                    break;
                }
                Message::DataRow(row) => {
                    let buf = row.buffer();
                    let mut ranges = row.ranges();
                    let mut cols = Vec::new();
                    while let Ok(Some(r)) = ranges.next() {
                        cols.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    out.rows.push(cols);
                }
                Message::ErrorResponse(e) => {
                    if err.is_none() {
                        err = Some(server_error(e.fields()));
                    }
                }
                Message::ParameterStatus(p) => self.param(&p),
                Message::CopyInResponse(_) => {
                    let mut b = BytesMut::new();
                    frontend::copy_fail("COPY FROM STDIN is not supported in a migration", &mut b)
                        .map_err(|e| client(format!("copy fail message: {e}")))?;
                    self.send(&b)?;
                }
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoticeResponse(_)
                | Message::NotificationResponse(_)
                | Message::CopyOutResponse(_)
                | Message::CopyData(_)
                | Message::CopyDone => {}
                _ => return Err(client("unexpected server message in a simple query")),
            }
        }
        match err {
            Some(e) => Err(PgError::Server(Box::new(e))),
            None => Ok(out),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut b = BytesMut::new();
        frontend::terminate(&mut b);
        let _ = self.stream.write_all(&b);
    }
}
