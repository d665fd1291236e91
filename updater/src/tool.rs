//! Every external tool (`pg_dump`, `pg_restore`, the restore's `psql`, `helm`) is started
//! here, so that three rules hold in one place:
//!
//! - **No secret in argv.** Database connection parameters reach the child
//!   through its environment ([`PgConn`]): the password goes in `PGPASSWORD`
//!   (readable only by the same user and root, unlike `/proc/<pid>/cmdline`),
//!   and argv gets the URL without it.
//! - **A child dies with the updater.** Each tool runs as
//!   `setpriv --pdeathsig KILL -- <tool> …` (util-linux): the kernel kills it
//!   when the updater exits, even by `kill -9`. `setpriv` is checked at
//!   start-up ([`check_setpriv`]).
//! - **Every started child is recorded.** While an operation is pending, each
//!   child's PID and start time go into the journal (`event: "child"`); before
//!   a resume or rollback continues, [`stop_leftovers`] makes sure no recorded
//!   worker of the interrupted operation is still alive (it is killed and
//!   waited for, and the operator is told).
//! - **`-v/--verbose` shows every child.** With [`set_verbose`], each start
//!   prints the command line on stderr (argv only, never the environment,
//!   where `PGPASSWORD` is; a password in a URL or after a password flag is
//!   shown as `***`, [`shown_arg`]) with the time since the updater began,
//!   and [`output`] prints how long the tool ran.
//! - **A tool that may hang has a time limit.** [`output_within`] kills a
//!   child still running at its limit (and reaps it) and keeps only the end
//!   of what it wrote, so neither a dead API server nor an endless log can
//!   stall or swell the caller (the support bundle's collectors).

use std::ffi::OsStr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Result, UpdaterError};
use crate::records::{ChildEvent, ChildLine};
use crate::state::StateDir;

/// The program every tool is run under.
pub const SETPRIV: &str = "setpriv";

/// Where started children are recorded: the state folder and the pending
/// operation's id. None outside an operation (plan, status).
static RECORDER: Mutex<Option<(StateDir, String)>> = Mutex::new(None);

/// Whether every started child is shown on stderr (`-v/--verbose`).
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// When verbose output began: child start times are shown relative to it.
static BEGAN: OnceLock<Instant> = OnceLock::new();

/// Shows every child command from now on (`-v/--verbose`).
pub fn set_verbose(on: bool) {
    BEGAN.get_or_init(Instant::now);
    VERBOSE.store(on, Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Flags whose next argument is a secret.
const SECRET_FLAGS: [&str; 6] = [
    "--password",
    "--pass",
    "--token",
    "--creds",
    "--dest-creds",
    "--src-creds",
];

/// One argument as `--verbose` shows it: the password of a URL
/// (`scheme://user:password@host`), a `password=` conninfo value, the value
/// of a secret flag (`--password x`, `--password=x`) become `***`.
pub fn shown_arg(prev: Option<&str>, arg: &str) -> String {
    if prev.is_some_and(|p| SECRET_FLAGS.contains(&p)) {
        return "***".into();
    }
    for f in SECRET_FLAGS {
        if let Some(rest) = arg.strip_prefix(f) {
            if rest.starts_with('=') {
                return format!("{f}=***");
            }
        }
    }
    let mut out = arg.to_owned();
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find([' ', '&'])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    if let Some(scheme) = out.find("://") {
        let auth_start = scheme + 3;
        let host_end = out[auth_start..]
            .find('/')
            .map_or(out.len(), |e| auth_start + e);
        if let Some(at) = out[auth_start..host_end].rfind('@') {
            let at = auth_start + at;
            if let Some(colon) = out[auth_start..at].find(':') {
                out.replace_range(auth_start + colon + 1..at, "***");
            }
        }
    }
    out
}

/// The command line of `cmd` as `--verbose` shows it (no environment).
fn shown(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    let mut prev: Option<String> = None;
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        parts.push(shown_arg(prev.as_deref(), &a));
        prev = Some(a.into_owned());
    }
    parts.join(" ")
}

fn since_start() -> f64 {
    BEGAN.get().map_or(0.0, |b| b.elapsed().as_secs_f64())
}

/// Records children of operation `op_id` in `sd`'s journal from now on.
pub fn record_children(sd: &StateDir, op_id: &str) {
    if let Ok(mut r) = RECORDER.lock() {
        *r = Some((sd.clone(), op_id.to_owned()));
    }
}

/// Fails with a clear message when `setpriv` (util-linux) is missing.
pub fn check_setpriv() -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(SETPRIV);
            f.metadata().is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    });
    if found {
        Ok(())
    } else {
        Err(UpdaterError::MissingTool {
            tool: SETPRIV.into(),
            reason: "needed so that psql, pg_dump, pg_restore and helm die with the updater; install util-linux".into(),
        })
    }
}

/// A command for `program` that runs under `setpriv --pdeathsig KILL`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(SETPRIV);
    c.args(["--pdeathsig", "KILL", "--"]).arg(program.as_ref());
    c
}

/// Spawns `cmd` (made by [`command`]) and records the child in the journal
/// when an operation is pending.
pub fn spawn(cmd: &mut Command, tool: &str) -> std::io::Result<Child> {
    if verbose() {
        eprintln!(
            "stoa-updater: run {tool} [at {:.2}s]: {}",
            since_start(),
            shown(cmd)
        );
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    let rec = RECORDER.lock().ok().and_then(|r| r.clone());
    if let Some((sd, op_id)) = rec {
        let start = start_time(pid);
        // a failed journal write must not leave the child unwatched: the
        // child still dies with us (pdeathsig); report and go on
        let line = ChildLine {
            op_id,
            event: ChildEvent::Child,
            tool: tool.to_owned(),
            pid,
            start_time: start,
            time: String::new(),
        };
        if let Err(e) = sd.journal_child(&line) {
            eprintln!("stoa-updater: warning: record child {tool} (pid {pid}): {e}");
        }
    }
    Ok(child)
}

/// `spawn` then wait for the output.
pub fn output(cmd: &mut Command, tool: &str) -> std::io::Result<std::process::Output> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let began = Instant::now();
    let out = spawn(cmd, tool)?.wait_with_output()?;
    if verbose() {
        eprintln!(
            "stoa-updater: {tool} ran {:.2}s ({})",
            began.elapsed().as_secs_f64(),
            out.status
        );
    }
    Ok(out)
}

/// What [`output_within`] got from a child: its exit status (None when it
/// was killed at the time limit), the last `max_bytes` of each stream, and
/// whether anything was cut.
#[derive(Debug)]
pub struct Bounded {
    pub status: Option<std::process::ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Killed at the time limit.
    pub timed_out: bool,
    /// Bytes dropped from the start of stdout (only the end was kept).
    pub stdout_dropped: u64,
}

/// Reads `r` to its end keeping only the last `max` bytes; returns them and
/// how many were dropped. Memory stays at `2 * max` whatever the child writes.
fn read_tail(mut r: impl std::io::Read, max: usize) -> (Vec<u8>, u64) {
    let mut keep: Vec<u8> = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * max.max(1) {
                    let cut = keep.len() - max;
                    dropped += cut as u64;
                    keep.drain(..cut);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if keep.len() > max {
        let cut = keep.len() - max;
        dropped += cut as u64;
        keep.drain(..cut);
    }
    (keep, dropped)
}

/// `spawn` then wait at most `limit`: a child still running then is killed
/// (SIGKILL) and reaped, and the answer says so (`timed_out`). Each stream
/// keeps its last `max_bytes`. The generic bound for a tool that may hang
/// (kubectl against a dead API server) or write without end.
pub fn output_within(
    cmd: &mut Command,
    tool: &str,
    limit: Duration,
    max_bytes: usize,
) -> std::io::Result<Bounded> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let began = Instant::now();
    let mut child = spawn(cmd, tool)?;
    let out = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || read_tail(o, max_bytes)));
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_tail(e, max_bytes.min(64 * 1024))));
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if began.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // a grandchild may hold the pipes open: the readers are only waited for
    // when the child ended by itself
    let join = |h: Option<std::thread::JoinHandle<(Vec<u8>, u64)>>| {
        h.filter(|h| !timed_out || h.is_finished())
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    };
    let (stdout, stdout_dropped) = join(out);
    let (stderr, _) = join(err);
    if verbose() {
        eprintln!(
            "stoa-updater: {tool} ran {:.2}s ({})",
            began.elapsed().as_secs_f64(),
            status.map_or_else(|| "killed at its time limit".to_owned(), |s| s.to_string())
        );
    }
    Ok(Bounded {
        status,
        stdout,
        stderr,
        timed_out,
        stdout_dropped,
    })
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`, clock ticks
/// since boot): a PID and its start time name one process, even after PID
/// reuse.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A recorded child of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub tool: String,
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// Children the journal records for operation `op_id`.
pub fn recorded_children(sd: &StateDir, op_id: &str) -> Vec<Recorded> {
    let Ok(text) = std::fs::read_to_string(sd.journal_path()) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<ChildLine>(l).ok())
        .filter(|c| c.op_id == op_id)
        .map(|c| Recorded {
            tool: c.tool,
            pid: c.pid,
            start_time: c.start_time,
        })
        .collect()
}

fn alive(r: &Recorded) -> bool {
    match (start_time(r.pid), r.start_time) {
        (Some(now), Some(then)) => now == then,
        // no start time recorded: the PID alone, if it still runs that tool
        (Some(_), None) => std::fs::read(format!("/proc/{}/cmdline", r.pid))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&r.tool)),
        (None, _) => false,
    }
}

/// Makes sure no recorded worker of the interrupted operation `op_id` is
/// still running: each one alive is killed (SIGKILL) and waited for. Returns
/// what was stopped, for the operator.
pub fn stop_leftovers(sd: &StateDir, op_id: &str) -> Result<Vec<Recorded>> {
    let mut stopped = Vec::new();
    for r in recorded_children(sd, op_id) {
        if !alive(&r) {
            continue;
        }
        let pid = rustix::process::Pid::from_raw(r.pid as i32).ok_or_else(|| {
            UpdaterError::Refused(format!("recorded worker pid {} is not valid", r.pid))
        })?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let t0 = Instant::now();
        while alive(&r) {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(UpdaterError::Refused(format!(
                    "{} (pid {}) of the interrupted operation is still running after SIGKILL; wait for it to end, then run this again",
                    r.tool, r.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "stoa-updater: stopped {} (pid {}), left running by the interrupted operation",
            r.tool, r.pid
        );
        stopped.push(r);
    }
    Ok(stopped)
}

/// A PostgreSQL connection for the client tools, from a `postgres://` URL:
/// the password (user-info or `?password=`) goes to `PGPASSWORD`, argv gets
/// the URL without it. Every other query parameter (`sslmode`, …) stays in
/// the URL, so libpq reads it as before.
#[derive(Clone)]
pub struct PgConn {
    url: String,
    password: Option<String>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl PgConn {
    /// Parses `url`; the error never holds the password.
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let mut u = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme {:?}: expected postgres:// or postgresql://",
                u.scheme()
            ));
        }
        // user-info is percent-encoded ('+' is a plus sign)
        let mut password = u.password().map(percent_decode);
        if password.is_some() {
            u.set_password(None)
                .map_err(|_| "cannot remove the password".to_owned())?;
        }
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let mut q = u.query_pairs_mut();
            q.clear();
            for (k, v) in &pairs {
                if k == "password" {
                    password = Some(v.clone());
                } else {
                    q.append_pair(k, v);
                }
            }
        }
        if u.query() == Some("") {
            u.set_query(None);
        }
        Ok(Self {
            url: u.to_string(),
            password,
        })
    }

    /// The URL without any password (safe for argv and messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Sets the child's environment: the URL's password, a connect timeout.
    pub fn env(&self, c: &mut Command) {
        // without a password in the URL, the operator's own PGPASSWORD or
        // ~/.pgpass (PGPASSFILE) work as usual
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c.env("PGCONNECT_TIMEOUT", "15");
    }
}

/// `%XX` escapes of a URL part decoded (an invalid escape stays as written);
/// the database URL's parts for both the tools and the wire client.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_never_shows_a_password() {
        assert_eq!(
            shown_arg(None, "postgres://app:s3cret@db:5432/stoa"),
            "postgres://app:***@db:5432/stoa"
        );
        assert_eq!(
            shown_arg(None, "host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(shown_arg(Some("--password"), "s3cret"), "***");
        assert_eq!(shown_arg(None, "--password=s3cret"), "--password=***");
        assert_eq!(shown_arg(None, "--dest-creds=u:s3cret"), "--dest-creds=***");
        assert_eq!(
            shown_arg(None, "postgres://app@db/stoa"),
            "postgres://app@db/stoa"
        );
        let mut c = command("psql");
        c.arg("postgres://app:s3cret@db/stoa")
            .env("PGPASSWORD", "s3cret");
        assert!(!shown(&c).contains("s3cret"), "{}", shown(&c));
    }

    #[test]
    fn password_leaves_the_url_and_query_parameters_stay() {
        let c = PgConn::parse(
            "postgres://app:s%40cret@db.site:5433/stoa?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("s@cret"));
        assert!(!c.url().contains("cret"), "{}", c.url());
        assert!(c.url().contains("sslmode=verify-full"), "{}", c.url());
        assert!(
            c.url().starts_with("postgres://app@db.site:5433/stoa"),
            "{}",
            c.url()
        );
        let c = PgConn::parse("postgresql://app@db/stoa?password=pw&sslmode=require").unwrap();
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert_eq!(c.url(), "postgresql://app@db/stoa?sslmode=require");
        let c = PgConn::parse("postgres://app@db/stoa?password=pw").unwrap();
        assert_eq!(c.url(), "postgres://app@db/stoa");
        assert!(!format!("{c:?}").contains("pw\""));
        let c = PgConn::parse("postgres://postgres@127.0.0.1:5432/stoa").unwrap();
        assert!(!c.has_password());
        // unix sockets, as libpq spells them, pass through unchanged
        let c = PgConn::parse("postgres:///stoa?host=/run/postgresql").unwrap();
        assert_eq!(c.url(), "postgres:///stoa?host=/run/postgresql");
        let c = PgConn::parse("postgres://app:pw@%2Frun%2Fpostgresql/stoa").unwrap();
        assert_eq!(c.url(), "postgres://app@%2Frun%2Fpostgresql/stoa");
        assert!(PgConn::parse("mysql://a:b@c/d").is_err());
        assert!(PgConn::parse("not a url").is_err());
    }

    #[test]
    fn a_child_past_its_time_limit_is_killed_and_output_is_bounded() {
        let t = Instant::now();
        let b = output_within(
            command("sleep").arg("30"),
            "sleep",
            Duration::from_millis(300),
            1024,
        )
        .unwrap();
        assert!(b.timed_out && b.status.is_none());
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let b = output_within(
            command("sh").args(["-c", "yes 0123456789 | head -c 1000000; echo END"]),
            "sh",
            Duration::from_secs(30),
            4096,
        )
        .unwrap();
        assert!(!b.timed_out && b.status.is_some_and(|s| s.success()));
        assert_eq!(b.stdout.len(), 4096);
        assert!(b.stdout.ends_with(b"END\n"));
        assert_eq!(b.stdout_dropped, 1_000_004 - 4096);
    }

    #[test]
    fn start_time_names_this_process() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        let r = Recorded {
            tool: "x".into(),
            pid: me,
            start_time: start_time(me),
        };
        assert!(alive(&r));
        let r = Recorded {
            start_time: start_time(me).map(|t| t + 1),
            ..r
        };
        assert!(!alive(&r), "another start time is another process");
    }
}
