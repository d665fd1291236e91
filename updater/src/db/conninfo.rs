//! The connection parameters of a `postgres://` URL, read the way libpq
//! reads them (the subset the site config documents): host (a name, an
//! address, or a unix socket folder as `host=/path` or `%2Fpath`), port,
//! dbname, user, password (user-info or `?password=`), `sslmode`
//! (disable/allow/prefer/require/verify-ca/verify-full), `sslrootcert`,
//! `passfile`, `connect_timeout`, `application_name`. Missing parts come
//! from `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGPASSFILE` as with libpq. Any other
//! parameter is refused (rather than silently ignored). The password is
//! never in a message or in `Debug`.

use std::path::PathBuf;
use std::time::Duration;

use crate::tool::percent_decode;

/// How TLS is used (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Like prefer (libpq tries plain first; we try TLS first, which is stricter).
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    /// A unix socket folder: the socket is `<dir>/.s.PGSQL.<port>`.
    Socket(PathBuf),
}

#[derive(Clone)]
pub struct ConnInfo {
    pub host: Host,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub sslmode: SslMode,
    /// `None`: libpq's default `~/.postgresql/root.crt` (when it exists).
    pub sslrootcert: Option<PathBuf>,
    pub passfile: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub application_name: String,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn sslmode(v: &str) -> Result<SslMode, String> {
    Ok(match v {
        "disable" => SslMode::Disable,
        "allow" => SslMode::Allow,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => return Err(format!("sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")),
    })
}

fn host_of(h: &str) -> Host {
    if h.starts_with('/') {
        Host::Socket(PathBuf::from(h))
    } else {
        Host::Tcp(h.trim_start_matches('[').trim_end_matches(']').to_owned())
    }
}

impl ConnInfo {
    /// Parses `raw`; errors never hold the password.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let u = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme {:?}: expected postgres:// or postgresql://",
                u.scheme()
            ));
        }
        let mut host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| host_of(&percent_decode(h)));
        let mut port = u.port();
        let mut user = Some(percent_decode(u.username())).filter(|s| !s.is_empty());
        let mut password = u.password().map(percent_decode);
        let mut dbname =
            Some(percent_decode(u.path().trim_start_matches('/'))).filter(|s| !s.is_empty());
        let mut mode = None;
        let mut rootcert = None;
        let mut passfile = None;
        let mut timeout = None;
        let mut app = None;
        for (k, v) in u.query_pairs() {
            let v = v.into_owned();
            match k.as_ref() {
                "host" => host = Some(host_of(&v)),
                "port" => port = Some(v.parse().map_err(|_| format!("port {v:?} is not a number"))?),
                "dbname" => dbname = Some(v),
                "user" => user = Some(v),
                "password" => password = Some(v),
                "sslmode" => mode = Some(sslmode(&v)?),
                "sslrootcert" => rootcert = Some(PathBuf::from(v)),
                "passfile" => passfile = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    timeout = Some(v.parse::<u64>().map_err(|_| format!("connect_timeout {v:?} is not a number"))?)
                }
                "application_name" => app = Some(v),
                other => {
                    return Err(format!(
                        "URL parameter {other:?} is not supported (host, port, dbname, user, password, sslmode, sslrootcert, passfile, connect_timeout, application_name)"
                    ))
                }
            }
        }
        let host = host
            .or_else(|| env("PGHOST").map(|h| host_of(&h)))
            .unwrap_or_else(|| Host::Socket(PathBuf::from("/var/run/postgresql")));
        let port = match port {
            Some(p) => p,
            None => match env("PGPORT") {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("PGPORT {p:?} is not a number"))?,
                None => 5432,
            },
        };
        let user = user
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .ok_or("no user in the URL (and no PGUSER or USER)")?;
        let dbname = dbname
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let sslmode = match mode {
            Some(m) => m,
            None => match env("PGSSLMODE") {
                Some(m) => sslmode(&m)?,
                None => SslMode::Prefer,
            },
        };
        Ok(Self {
            host,
            port,
            dbname,
            user,
            password: password.or_else(|| env("PGPASSWORD")),
            sslmode,
            sslrootcert: rootcert.or_else(|| env("PGSSLROOTCERT").map(PathBuf::from)),
            passfile: passfile.or_else(|| env("PGPASSFILE").map(PathBuf::from)),
            connect_timeout: Duration::from_secs(timeout.unwrap_or(15).max(2)),
            application_name: app.unwrap_or_else(|| "stoa-updater".into()),
        })
    }

    /// The host as `.pgpass` and TLS name it: `localhost` for a socket.
    pub fn host_name(&self) -> String {
        match &self.host {
            Host::Tcp(h) => h.clone(),
            Host::Socket(_) => "localhost".into(),
        }
    }

    /// The password: the URL's (or `PGPASSWORD`), else the first matching
    /// line of the password file (`passfile`, `PGPASSFILE`, `~/.pgpass`),
    /// which like libpq is ignored unless it is private (no group/other
    /// bits).
    pub fn resolve_password(&self) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let file = self
            .passfile
            .clone()
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
        let meta = std::fs::metadata(&file).ok()?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
            eprintln!(
                "stoa-updater: warning: password file {} has group or world access; it is ignored (chmod 600 it)",
                file.display()
            );
            return None;
        }
        let text = std::fs::read_to_string(&file).ok()?;
        let port = self.port.to_string();
        let host = self.host_name();
        let host_alt = match &self.host {
            Host::Socket(d) => Some(d.display().to_string()),
            Host::Tcp(_) => None,
        };
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .find_map(|l| {
                let f = pgpass_fields(l);
                if f.len() != 5 {
                    return None;
                }
                let m = |pat: &str, v: &str| pat == "*" || pat == v;
                let host_ok = m(&f[0], &host) || host_alt.as_deref().is_some_and(|a| m(&f[0], a));
                (host_ok && m(&f[1], &port) && m(&f[2], &self.dbname) && m(&f[3], &self.user))
                    .then(|| f[4].clone())
            })
    }
}

/// The `:`-separated fields of a `.pgpass` line (`\:` and `\\` escaped).
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in line.chars() {
        match (esc, c) {
            (true, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
                esc = false;
            }
            (false, '\\') => esc = true,
            (false, ':') => out.push(String::new()),
            (false, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_libpq_reads_them() {
        let c = ConnInfo::parse(
            "postgres://app:s%40cret@db.site:5433/stoa?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(c.host, Host::Tcp("db.site".into()));
        assert_eq!(
            (c.port, c.dbname.as_str(), c.user.as_str()),
            (5433, "stoa", "app")
        );
        assert_eq!(c.password.as_deref(), Some("s@cret"));
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!format!("{c:?}").contains("cret"));
        let c = ConnInfo::parse("postgres://app@%2Frun%2Fpostgresql:5444/stoa").unwrap();
        assert_eq!(c.host, Host::Socket("/run/postgresql".into()));
        assert_eq!(c.port, 5444);
        let c = ConnInfo::parse("postgres:///stoa?host=/run/pg&user=u&password=pw&sslmode=disable")
            .unwrap();
        assert_eq!(c.host, Host::Socket("/run/pg".into()));
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("u", Some("pw")));
        assert_eq!(c.sslmode, SslMode::Disable);
        let e = ConnInfo::parse("postgres://a:hunter2@h/d?sslcert=/x").unwrap_err();
        assert!(e.contains("sslcert") && !e.contains("hunter2"), "{e}");
        assert!(ConnInfo::parse("postgres://a@h/d?sslmode=sometimes").is_err());
        assert!(ConnInfo::parse("mysql://a@h/d").is_err());
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            pgpass_fields(r"h:5432:d:u:p\:w\\x"),
            ["h", "5432", "d", "u", r"p:w\x"]
        );
        let dir = tempfile_dir();
        let f = dir.join("pgpass");
        std::fs::write(&f, "# c\nother:*:*:*:no\n*:5433:stoa:app:yes\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let url = format!("postgres://app@db:5433/stoa?passfile={}", f.display());
        let mut c = ConnInfo::parse(&url).unwrap();
        c.password = None;
        assert_eq!(c.resolve_password().as_deref(), Some("yes"));
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert_eq!(
            c.resolve_password(),
            None,
            "a readable password file is ignored"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("stoa-conninfo-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
