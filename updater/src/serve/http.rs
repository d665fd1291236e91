//! The little HTTP/1.1 that `serve` speaks: reading one request head with
//! hard caps (size, header count, time), the request target split and
//! percent-decoded under the registry's rules (no encoded `/`, no `..`),
//! the `Range` header, and writing a response head or an OCI error JSON.
//! No request body is ever read: every method that carries one is refused.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

/// The largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 16 << 10;
/// The most header lines one request may have.
pub const MAX_HEADERS: usize = 64;
/// The longest request target (path and query) accepted.
pub const MAX_TARGET: usize = 2048;

/// A request head, as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The raw target (origin form: `/v2/…?…`), not decoded.
    pub target: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Header names in lower case, values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of that (lower case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => self.version == "HTTP/1.1",
        }
    }

    /// Whether the request says it has a body (which is never read).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The connection closed (or timed out) before any byte of a request.
    Closed,
    /// Not a request this server reads; answered 400 (or 431), then closed.
    Bad(u16, &'static str),
    Io(io::Error),
}

/// The longest method token accepted (`OPTIONS` is 7).
const MAX_METHOD: usize = 16;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Reads one request head from `r`, at most [`MAX_HEAD`] bytes, within
/// `deadline` of the call (a client that trickles a head is cut with 408).
/// `set_timeout` is called before every read with the time left, so a
/// silent client is cut at the deadline too, not at the socket's own
/// timeout. The head is checked as it arrives: bytes that cannot start an
/// HTTP request line (a TLS ClientHello on the plain port, binary noise)
/// are answered 400 at once instead of waiting for a `CRLF CRLF` that never
/// comes.
pub fn read_head(
    r: &mut impl BufRead,
    deadline: Duration,
    set_timeout: &mut dyn FnMut(Duration),
) -> Result<Request, HeadError> {
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let t0 = Instant::now();
    loop {
        let Some(left) = deadline.checked_sub(t0.elapsed()).filter(|d| !d.is_zero()) else {
            return Err(HeadError::Bad(408, "the request head took too long"));
        };
        set_timeout(left);
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) && head.is_empty() => return Err(HeadError::Closed),
            Err(e) if is_timeout(&e) => {
                return Err(HeadError::Bad(408, "the request head took too long"))
            }
            Err(e) => return Err(HeadError::Io(e)),
        };
        if buf.is_empty() {
            return if head.is_empty() {
                Err(HeadError::Closed)
            } else {
                Err(HeadError::Bad(
                    400,
                    "the connection closed inside a request head",
                ))
            };
        }
        // take up to the end of the head, never past it (the next request
        // of a pipelining client stays in the buffer)
        let before = head.len();
        let mut take = buf.len();
        for (i, &b) in buf.iter().enumerate() {
            head.push(b);
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                take = i + 1;
                break;
            }
            if head.len() > MAX_HEAD {
                return Err(HeadError::Bad(431, "the request head is too large"));
            }
        }
        head.truncate(before + take);
        r.consume(take);
        check_method_prefix(&head)?;
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    parse_head(&head)
}

/// Refuses, from its first bytes, what cannot be an HTTP request: the
/// method is one to [`MAX_METHOD`] upper-case letters followed by a space.
fn check_method_prefix(head: &[u8]) -> Result<(), HeadError> {
    if head.first() == Some(&TLS_HANDSHAKE) {
        return Err(HeadError::Bad(
            400,
            "a TLS handshake on a plain-HTTP port: this registry is served over http://",
        ));
    }
    let method_len = head.iter().position(|&b| b == b' ').unwrap_or(head.len());
    if method_len > MAX_METHOD
        || !head[..method_len].iter().all(u8::is_ascii_uppercase)
        || (method_len == 0 && !head.is_empty())
    {
        return Err(HeadError::Bad(400, "not an HTTP/1.1 request"));
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Parses a complete request head (request line, headers, empty line).
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Bad(400, "not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Bad(400, "malformed method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Bad(400, "not HTTP/1.0 or HTTP/1.1"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Bad(400, "the request target is not a path"));
    }
    if target.len() > MAX_TARGET {
        return Err(HeadError::Bad(414, "the request target is too long"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        if l.starts_with([' ', '\t']) {
            return Err(HeadError::Bad(400, "folded header lines are not accepted"));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(HeadError::Bad(400, "malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(HeadError::Bad(400, "malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        if headers.len() > MAX_HEADERS {
            return Err(HeadError::Bad(431, "too many header lines"));
        }
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

/// Splits a raw target into its decoded path segments and its query.
/// Refused (the message says why): an encoded `/` or `\`, a NUL or
/// control character, a `.` or `..` segment, an empty segment (`//`), and
/// bad percent-encoding. `/v2/` gives `["v2"]`.
pub fn split_target(target: &str) -> Result<(Vec<String>, &str), &'static str> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let inner = path
        .strip_prefix('/')
        .ok_or("the path does not start with /")?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let mut segs = Vec::new();
    for raw in inner.split('/') {
        let seg = percent_decode_segment(raw)?;
        if seg.is_empty() {
            return Err("the path has an empty segment (//)");
        }
        if seg == "." || seg == ".." {
            return Err("the path has a . or .. segment");
        }
        segs.push(seg);
    }
    Ok((segs, query))
}

fn percent_decode_segment(raw: &str) -> Result<String, &'static str> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("bad percent-encoding")?;
                let s = std::str::from_utf8(hex).map_err(|_| "bad percent-encoding")?;
                let v = u8::from_str_radix(s, 16).map_err(|_| "bad percent-encoding")?;
                if v == b'/' || v == b'\\' {
                    return Err("the path has an encoded slash");
                }
                out.push(v);
                i += 3;
            }
            b'\\' => return Err("the path has a backslash"),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    if out.iter().any(|c| c.is_ascii_control()) {
        return Err("the path has a control character");
    }
    String::from_utf8(out).map_err(|_| "the path is not UTF-8")
}

/// One query parameter's (raw) value.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A satisfiable byte range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Parses `Range` for a blob of `size` bytes. `Ok(None)`: no header;
/// `Err(())`: answered 416 (another unit, several ranges, garbage, a range
/// that starts past the end or ends before it starts, an empty blob).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') || size == 0 {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    let r = if a.trim().is_empty() {
        // the last N bytes
        let n = num(b.trim())?;
        if n == 0 {
            return Err(());
        }
        ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        }
    } else {
        let start = num(a.trim())?;
        let end = if b.trim().is_empty() {
            size - 1
        } else {
            num(b.trim())?.min(size - 1)
        };
        if start >= size || end < start {
            return Err(());
        }
        ByteRange { start, end }
    };
    Ok(Some(r))
}

/// The reason phrase of the status codes used.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response head: the status, `Content-Length` and the other headers.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub length: u64,
    pub headers: Vec<(&'static str, String)>,
    pub close: bool,
}

impl Head {
    pub fn new(status: u16, length: u64) -> Self {
        Self {
            status,
            length,
            headers: Vec::new(),
            close: false,
        }
    }
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes of the head.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        s.push_str("Docker-Distribution-API-Version: registry/2.0\r\n");
        s.push_str(&format!("Content-Length: {}\r\n", self.length));
        for (n, v) in &self.headers {
            // values are ours (digests, media types, numbers); no CR/LF
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str(if self.close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        s.into_bytes()
    }
}

/// The OCI distribution error body: `{"errors":[{"code","message"}]}`.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "errors": [{"code": code, "message": message, "detail": null}]
    }))
    .unwrap_or_default()
}

/// Writes a whole small response (head and body; the body is left out for
/// HEAD, with its length kept).
pub fn write_small(w: &mut impl Write, head: Head, body: &[u8], is_head: bool) -> io::Result<()> {
    let mut out = head.to_bytes();
    if !is_head {
        out.extend_from_slice(body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// An OCI error response.
pub fn error_response(status: u16, code: &str, message: &str) -> (Head, Vec<u8>) {
    let body = error_body(code, message);
    let head = Head::new(status, body.len() as u64).with("Content-Type", "application/json");
    (head, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn head(s: &str) -> Result<Request, HeadError> {
        read_head(
            &mut BufReader::new(s.as_bytes()),
            Duration::from_secs(5),
            &mut |_| {},
        )
    }

    #[test]
    fn a_request_head_is_read_with_lower_case_header_names() {
        let r = head("GET /v2/ HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\nNEXT").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/v2/");
        assert_eq!(r.header("range"), Some("bytes=0-1"));
        assert!(r.keep_alive());
        assert!(!r.has_body());
    }

    #[test]
    fn a_pipelined_request_stays_in_the_buffer() {
        let mut r = BufReader::new(&b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n"[..]);
        let a = read_head(&mut r, Duration::from_secs(5), &mut |_| {}).unwrap();
        let b = read_head(&mut r, Duration::from_secs(5), &mut |_| {}).unwrap();
        assert_eq!((a.target.as_str(), b.target.as_str()), ("/a", "/b"));
        assert!(!b.keep_alive(), "HTTP/1.0 closes by default");
        assert!(matches!(
            read_head(&mut r, Duration::from_secs(5), &mut |_| {}),
            Err(HeadError::Closed)
        ));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "GET /v2/\r\n\r\n",
            "GET /v2/ HTTP/2\r\n\r\n",
            "get /v2/ HTTP/1.1\r\n\r\n",
            "GET v2 HTTP/1.1\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nHost",
        ] {
            assert!(matches!(head(bad), Err(HeadError::Bad(400, _))), "{bad:?}");
        }
        let big = format!("GET /v2/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(head(&big), Err(HeadError::Bad(431, _))));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        assert!(matches!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::Bad(431, _))
        ));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
        assert!(matches!(head(&long), Err(HeadError::Bad(414, _))));
    }

    /// Gives `chunks` one per read, then blocks (a timeout error) like a
    /// client that sent them and waits; sleeps `pause` before each read.
    struct Trickle {
        chunks: Vec<Vec<u8>>,
        pause: Duration,
    }
    impl std::io::Read for Trickle {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.pause);
            if self.chunks.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let c = self.chunks.remove(0);
            b[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        }
    }

    #[test]
    fn a_tls_client_hello_or_binary_noise_is_refused_at_its_first_bytes() {
        // a client that sent its ClientHello and waits for the server's
        // answer gets one at once, not at the head deadline
        let hello = vec![
            TLS_HANDSHAKE,
            0x03,
            0x01,
            0x02,
            0x00,
            0x01,
            0x00,
            0x01,
            0xfc,
        ];
        for first in [hello, b"\x00\x01".to_vec(), b"GE\tT / HTTP/1.1".to_vec()] {
            let mut r = BufReader::new(Trickle {
                chunks: vec![first.clone()],
                pause: Duration::ZERO,
            });
            let t = Instant::now();
            let got = read_head(&mut r, Duration::from_secs(30), &mut |_| {});
            assert!(matches!(got, Err(HeadError::Bad(400, _))), "{first:?}");
            assert!(t.elapsed() < Duration::from_secs(1));
        }
        let mut r = BufReader::new(Trickle {
            chunks: vec![b"VERYLONGMETHODNAMEX".to_vec()],
            pause: Duration::ZERO,
        });
        let got = read_head(&mut r, Duration::from_secs(30), &mut |_| {});
        assert!(matches!(got, Err(HeadError::Bad(400, _))));
        // the start of a real request waits for the rest
        let mut r = BufReader::new(Trickle {
            chunks: vec![b"GE".to_vec(), b"T /v2/ HTTP/1.1\r\n\r\n".to_vec()],
            pause: Duration::ZERO,
        });
        assert!(read_head(&mut r, Duration::from_secs(30), &mut |_| {}).is_ok());
    }

    #[test]
    fn a_trickled_or_stalled_head_is_cut_at_the_deadline_with_408() {
        let deadline = Duration::from_millis(300);
        let mut timeouts = Vec::new();
        let mut r = BufReader::new(Trickle {
            chunks: std::iter::once(b"GET /".to_vec())
                .chain((0..100).map(|_| b"a".to_vec()))
                .collect(),
            pause: Duration::from_millis(50),
        });
        let t = Instant::now();
        let got = read_head(&mut r, deadline, &mut |d| timeouts.push(d));
        assert!(matches!(got, Err(HeadError::Bad(408, _))), "{got:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(timeouts.iter().all(|d| *d <= deadline), "{timeouts:?}");
        assert!(timeouts.windows(2).all(|w| w[1] <= w[0]), "{timeouts:?}");
        // a head begun, then silence: 408, the socket timeout is the time left
        let mut timeouts = Vec::new();
        let mut r = BufReader::new(Trickle {
            chunks: vec![b"GET /v2/ HT".to_vec()],
            pause: Duration::ZERO,
        });
        let got = read_head(&mut r, deadline, &mut |d| timeouts.push(d));
        assert!(matches!(got, Err(HeadError::Bad(408, _))), "{got:?}");
        assert!(timeouts.iter().all(|d| *d <= deadline));
    }

    #[test]
    fn path_tricks_are_refused() {
        for bad in [
            "/v2/a/../b/manifests/x",
            "/v2/a/%2e%2e/b/manifests/x",
            "/v2/a%2Fb/manifests/x",
            "/v2/a%2fb/manifests/x",
            "/v2/a%5Cb/manifests/x",
            "/v2/a\\b/manifests/x",
            "/v2//a/manifests/x",
            "/v2/a/./manifests/x",
            "/v2/a%00/manifests/x",
            "/v2/a%zz/manifests/x",
            "/v2/a%2/manifests/x",
        ] {
            assert!(split_target(bad).is_err(), "{bad}");
        }
        let (segs, q) = split_target("/v2/site/stoa/api/manifests/sha256%3Aab?n=1").unwrap();
        assert_eq!(
            segs,
            ["v2", "site", "stoa", "api", "manifests", "sha256:ab"]
        );
        assert_eq!(q, "n=1");
        assert_eq!(split_target("/v2/").unwrap().0, ["v2"]);
        assert_eq!(query_param("n=5&last=a%2Fb", "last"), Some("a%2Fb"));
        assert_eq!(query_param("n=5", "last"), None);
    }

    #[test]
    fn ranges_are_parsed_and_bad_ones_refused() {
        let r = |h: &str, size| parse_range(Some(h), size);
        assert_eq!(
            r("bytes=0-9", 100),
            Ok(Some(ByteRange { start: 0, end: 9 }))
        );
        assert_eq!(
            r("bytes=90-", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            r("bytes=90-500", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            r("bytes=-10", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            r("bytes=-500", 100),
            Ok(Some(ByteRange { start: 0, end: 99 }))
        );
        assert_eq!(parse_range(None, 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-0",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes 0-1",
        ] {
            assert_eq!(r(bad, 100), Err(()), "{bad}");
        }
        assert_eq!(r("bytes=0-", 0), Err(()));
    }

    #[test]
    fn the_error_body_is_oci_error_json() {
        let (h, body) = error_response(405, "UNSUPPORTED", "read-only");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNSUPPORTED");
        let text = String::from_utf8(h.to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn header_values_cannot_split_the_response() {
        let h = Head::new(200, 0).with("X", "a\r\nSet-Cookie: b");
        let text = String::from_utf8(h.to_bytes()).unwrap();
        assert!(text.contains("X: aSet-Cookie: b\r\n"), "{text}");
    }
}
