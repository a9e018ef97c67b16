//! A real PostgreSQL server for tests (feature `testing`): one per test process, started on
//! first use from the distribution's binaries (`initdb`, `postgres`) in a temporary
//! directory, listening on a Unix socket only (no TCP port to collide on), and a fresh
//! database for every test that asks. `SWITCHYARD_TEST_POSTGRES_URL` (an administrator's
//! URL) uses a server that is already running instead.
//!
//! The server ends with the test process: it is started by a shell that waits on a pipe
//! from this process and, when the pipe closes — at exit, however the process ends —
//! stops the server and removes its directory.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::SqlStore;

/// How long the server may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The server of this process (started once; lives until the process exits).
static SERVER: OnceLock<std::result::Result<Postgres, String>> = OnceLock::new();

/// A PostgreSQL server tests create databases on.
#[derive(Debug)]
pub struct Postgres {
    /// An administrator's URL, without a database name's effect beyond the connection.
    admin_url: String,
    /// The URL of database `NAME` is `url_for(NAME)`.
    base: Base,
    next: AtomicU64,
    /// Keeps the directory and the server (the pipe its shell waits on).
    _own: Option<Mutex<Owned>>,
}

#[derive(Debug)]
enum Base {
    /// A socket directory of a server started here.
    Socket(PathBuf),
    /// `SWITCHYARD_TEST_POSTGRES_URL`: the database name is replaced.
    Url(String),
}

#[derive(Debug)]
struct Owned {
    /// Kept (never dropped: the server's shell removes it when it stops the server).
    _dir: PathBuf,
    _child: Child,
    _stdin: ChildStdin,
}

/// A database of its own for one test, and how to open a store on it.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    name: String,
    admin_url: String,
}

impl Database {
    /// Cuts this database off as an outage would (`false`: every connection to it is
    /// closed and new ones are refused), or lets it be reached again (`true`).
    pub async fn set_reachable(&self, reachable: bool) {
        sqlx::any::install_default_drivers();
        let admin = match sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
        {
            Ok(a) => a,
            Err(e) => panic!("cannot reach the test PostgreSQL server: {e}"),
        };
        let name = &self.name;
        let mut statements = vec![format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}"
        )];
        if !reachable {
            statements.push(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ));
        }
        for sql in statements {
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await {
                panic!("cannot change the test database's reachability: {e}");
            }
        }
        admin.close().await;
    }

    /// A store on this database (its schema created on first open).
    pub async fn store(&self) -> SqlStore {
        match SqlStore::connect(&self.url).await {
            Ok(s) => s,
            Err(e) => panic!("cannot open the test database: {e}"),
        }
    }
}

impl Postgres {
    /// The server of this process, started on first use. Panics (naming what to install)
    /// when there is none to start.
    pub fn get() -> &'static Postgres {
        match SERVER.get_or_init(Postgres::start) {
            Ok(p) => p,
            Err(e) => panic!("no PostgreSQL server for the tests: {e}"),
        }
    }

    /// A new, empty database.
    pub async fn database(&self) -> Database {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url);
        sqlx::any::install_default_drivers();
        let admin = match admin.await {
            Ok(a) => a,
            Err(e) => panic!("cannot reach the test PostgreSQL server: {e}"),
        };
        let create = format!("CREATE DATABASE {name}");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&admin)
            .await
        {
            panic!("cannot create a test database: {e}");
        }
        admin.close().await;
        Database {
            url: self.url_for(&name),
            admin_url: self.admin_url.clone(),
            name,
        }
    }

    fn url_for(&self, db: &str) -> String {
        match &self.base {
            Base::Socket(dir) => {
                format!("postgres://postgres@localhost/{db}?host={}", dir.display())
            }
            Base::Url(url) => replace_database(url, db),
        }
    }

    fn start() -> std::result::Result<Postgres, String> {
        if let Ok(url) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
            return Ok(Postgres {
                admin_url: url.clone(),
                base: Base::Url(url),
                next: AtomicU64::new(0),
                _own: None,
            });
        }
        let bin = binaries().ok_or(
            "initdb and postgres not found (install PostgreSQL: apt-get install postgresql, \
             or set SWITCHYARD_TEST_POSTGRES_URL)",
        )?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let socket = dir.path().to_path_buf();
        // PostgreSQL refuses to run as root: then it runs as the `postgres` user.
        let user = run_as()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, user);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The shell stops the server when this process's end of the pipe closes.
        let script = format!(
            "'{}' -D '{}' -k '{}' -c listen_addresses= -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 >'{}/log' 2>&1 & pid=$!; \
             read _; kill -QUIT $pid; wait $pid; rm -rf '{}'",
            bin.join("postgres").display(),
            data.display(),
            socket.display(),
            dir.path().display(),
            dir.path().display(),
        );
        let mut sh = Command::new("sh");
        sh.args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut sh, user);
        let mut child = sh.spawn().map_err(|e| format!("start postgres: {e}"))?;
        let stdin = child.stdin.take().ok_or("no pipe to the server's shell")?;
        let deadline = Instant::now() + START_DEADLINE;
        let ready = socket.join(".s.PGSQL.5432");
        while !ready.exists() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                return Err(format!("postgres did not start: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let admin_url = format!(
            "postgres://postgres@localhost/postgres?host={}",
            socket.display()
        );
        Ok(Postgres {
            admin_url,
            base: Base::Socket(socket),
            next: AtomicU64::new(0),
            _own: Some(Mutex::new(Owned {
                _dir: dir.keep(),
                _child: child,
                _stdin: stdin,
            })),
        })
    }
}

/// The directory of `initdb` and `postgres`: on the `PATH`, or the newest of Debian's.
fn binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// `Some((uid, gid))` of the `postgres` user when this process is root.
fn run_as() -> std::result::Result<Option<(u32, u32)>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self").map_err(|e| e.to_string())?;
    if me.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres"))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .map(Some)
        .ok_or_else(|| {
            "running as root and there is no `postgres` user to run PostgreSQL as".into()
        })
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

/// `url` with its database (the path) replaced by `db`.
fn replace_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let base = match head
        .split_once("://")
        .map(|(s, rest)| (s, rest.split_once('/')))
    {
        Some((scheme, Some((authority, _)))) => format!("{scheme}://{authority}/{db}"),
        Some((scheme, None)) => format!("{scheme}://{}/{db}", &head[scheme.len() + 3..]),
        None => head.to_string(),
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}
