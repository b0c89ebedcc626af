//! The PostgreSQL baseline: the same reservation (one counter, check and take, a reservation row
//! and an outbox event row, all or nothing) done the way a careful team would in PostgreSQL,
//! against Debian's server started here on a private data directory and port.
//!
//! Two variants, each with `synchronous_commit` on and off (off is the fair match for Redis with
//! AOF fsync every second: both may lose the last moments of acknowledged writes on a crash):
//! - `update-returning`: one statement, so one round trip and one implicit transaction: a
//!   conditional `UPDATE ... WHERE used + $q <= capacity RETURNING`, feeding the inserts of the
//!   reservation and its event.
//! - `for-update`: the read-check-write transaction teams often start from: `SELECT ... FOR
//!   UPDATE`, check in the client, `UPDATE`, two `INSERT`s, `COMMIT`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use crate::load::Ended;
use allot_fixtures::free_port;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The role the bench connects as (trust authentication, loopback only).
const ROLE: &str = "bench";

const SCHEMA: &str = "
    DROP TABLE IF EXISTS events, reservations, counters;
    CREATE TABLE counters (id bigint PRIMARY KEY, capacity bigint NOT NULL, used bigint NOT NULL,
                           CHECK (used >= 0));
    CREATE TABLE reservations (id uuid PRIMARY KEY, counter_id bigint NOT NULL REFERENCES counters,
                               quantity bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, data jsonb NOT NULL);";

const UPDATE_RETURNING: &str = "
    WITH taken AS (
        UPDATE counters SET used = used + $2 WHERE id = $1 AND used + $2 <= capacity
        RETURNING id, capacity, used),
    placed AS (
        INSERT INTO reservations (id, counter_id, quantity) SELECT $3, id, $2 FROM taken RETURNING id)
    INSERT INTO events (kind, data)
        SELECT 'reservation_placed', jsonb_build_object('reservation', placed.id, 'capacity', taken.capacity,
                                                        'used', taken.used)
        FROM taken, placed
    RETURNING id";

/// Debian's PostgreSQL server binaries: the newest `/usr/lib/postgresql/<major>/bin`.
fn server_bin() -> anyhow::Result<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed: apt-get install postgresql (cargo xtask bench does)")?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").is_file())
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin).context("no PostgreSQL server under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (the server refuses to run as root).
fn as_server_user(program: PathBuf) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A private PostgreSQL server, stopped (fast shutdown) and its directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Postgres {
    /// Initialises a cluster in a scratch directory and starts the server on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = server_bin()?;
        let dir = std::env::temp_dir().join(format!("allot-bench-postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status()?;
            if !status.success() {
                bail!("could not hand {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        let initdb = as_server_user(bin.join("initdb"))
            .args(["--auth=trust", "--username", ROLE, "--encoding=UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running initdb")?;
        if !initdb.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        }
        let port = free_port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("allot-bench-postgres-{port}.log")))?;
        let child = as_server_user(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=256MB"])
            // Durable as shipped: fsync on, full_page_writes on; synchronous_commit is set per session.
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        let server = Self { child, dir, port };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if server.connect().await.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections within {} s", START_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        let config = format!("host=127.0.0.1 port={} user={ROLE} dbname=postgres", self.port);
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which way to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One conditional `UPDATE ... RETURNING` statement feeding the inserts.
    UpdateReturning,
    /// `SELECT ... FOR UPDATE`, check, `UPDATE`, inserts, `COMMIT`.
    ForUpdate,
}

struct Session {
    client: Client,
    update_returning: Statement,
    lock: Statement,
    take: Statement,
    insert_reservation: Statement,
    insert_event: Statement,
}

/// A pool of sessions on counters 1..=n.
#[derive(Clone)]
pub struct Baseline {
    pool: Arc<Mutex<Vec<Session>>>,
    variant: Variant,
    probe: Arc<Client>,
}

impl Baseline {
    /// Recreates the schema with `counters` counters (ids 1..=counters) of `capacity` each, and
    /// opens `connections` sessions.
    pub async fn new(
        server: &Postgres,
        variant: Variant,
        synchronous_commit: bool,
        connections: usize,
        counters: usize,
        capacity: u64,
    ) -> anyhow::Result<Self> {
        let probe = server.connect().await?;
        probe.batch_execute(SCHEMA).await.context("creating the schema")?;
        probe
            .execute(
                "INSERT INTO counters (id, capacity, used) SELECT g, $2, 0 FROM generate_series(1, $1::bigint) g",
                &[&(counters as i64), &(capacity as i64)],
            )
            .await?;
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections {
            let client = server.connect().await?;
            let setting = if synchronous_commit { "on" } else { "off" };
            client.batch_execute(&format!("SET synchronous_commit = {setting}")).await?;
            pool.push(Session {
                update_returning: client.prepare(UPDATE_RETURNING).await?,
                lock: client.prepare("SELECT capacity, used FROM counters WHERE id = $1 FOR UPDATE").await?,
                take: client.prepare("UPDATE counters SET used = used + $2 WHERE id = $1 RETURNING used").await?,
                insert_reservation: client
                    .prepare("INSERT INTO reservations (id, counter_id, quantity) VALUES ($3, $1, $2)")
                    .await?,
                insert_event: client
                    .prepare(
                        "INSERT INTO events (kind, data) VALUES ('reservation_placed', \
                         jsonb_build_object('reservation', $1::uuid, 'capacity', $2::bigint, 'used', $3::bigint)) \
                         RETURNING id",
                    )
                    .await?,
                client,
            });
        }
        Ok(Self { pool: Arc::new(Mutex::new(pool)), variant, probe: Arc::new(probe) })
    }

    /// One reservation of quantity 1 of counter `counter` (1-based).
    pub async fn reserve(&self, counter: i64) -> Ended {
        let Some(mut session) = self.pool.lock().await.pop() else { return Ended::Error };
        let ended = match self.variant {
            Variant::UpdateReturning => update_returning(&session, counter).await,
            Variant::ForUpdate => for_update(&mut session, counter).await,
        };
        self.pool.lock().await.push(session);
        ended.unwrap_or(Ended::Error)
    }

    /// After a run: (counters over capacity, counters whose used differs from their
    /// reservations, total used, reservations, events).
    pub async fn totals(&self) -> anyhow::Result<(u64, u64, u64, u64, u64)> {
        let row = self
            .probe
            .query_one(
                "SELECT (SELECT count(*) FROM counters WHERE used > capacity), \
                 (SELECT count(*) FROM counters c LEFT JOIN (SELECT counter_id, sum(quantity) AS q \
                    FROM reservations GROUP BY counter_id) r ON r.counter_id = c.id \
                    WHERE c.used <> coalesce(r.q, 0)), \
                 (SELECT coalesce(sum(used), 0)::bigint FROM counters), \
                 (SELECT count(*) FROM reservations), (SELECT count(*) FROM events)",
                &[],
            )
            .await?;
        let get = |i: usize| row.get::<_, i64>(i) as u64;
        Ok((get(0), get(1), get(2), get(3), get(4)))
    }
}

const QUANTITY: i64 = 1;

async fn update_returning(session: &Session, counter: i64) -> anyhow::Result<Ended> {
    let id = uuid_param();
    let rows = session.client.query(&session.update_returning, &[&counter, &QUANTITY, &id]).await?;
    Ok(if rows.is_empty() { Ended::Refused } else { Ended::Ok })
}

async fn for_update(session: &mut Session, counter: i64) -> anyhow::Result<Ended> {
    let id = uuid_param();
    let transaction = session.client.transaction().await?;
    let row = transaction.query_one(&session.lock, &[&counter]).await?;
    let (capacity, used): (i64, i64) = (row.get(0), row.get(1));
    if used + QUANTITY > capacity {
        transaction.rollback().await?;
        return Ok(Ended::Refused);
    }
    let after: i64 = transaction.query_one(&session.take, &[&counter, &QUANTITY]).await?.get(0);
    transaction.execute(&session.insert_reservation, &[&counter, &QUANTITY, &id]).await?;
    transaction.query_one(&session.insert_event, &[&id, &capacity, &after]).await?;
    transaction.commit().await?;
    Ok(Ended::Ok)
}

fn uuid_param() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}
