//! The real `allot` binary: help text, dev-mode refusal, the embedded supervised redis-server,
//! Prometheus-valid metrics, and a clean stop on SIGTERM.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Api, START_TIMEOUT, allot_binary, free_port, one_item, send};

/// A running `allot serve`, killed if the test fails before stopping it.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    /// SIGTERM, so that the coordinator stops its embedded redis-server too; SIGKILL would
    /// leave that redis-server running.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path, extra_env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let mut command = Command::new(allot_binary());
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", &data_dir.to_string_lossy()])
        .env_remove("ALLOT_REDIS_URL")
        .env_remove("ALLOT_ADMIN_TOKEN")
        .env_remove("ALLOT_EDGE_SECRET")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let child = command.spawn().expect("allot starts");
    Served { child, base: format!("http://127.0.0.1:{port}") }
}

async fn wait_ready(base: &str) {
    let http = crate::common::client();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "allot did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("allot-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn redis_pid(data_dir: &Path) -> u32 {
    std::fs::read_to_string(data_dir.join("redis.pid")).expect("pidfile").trim().parse().expect("pid")
}

/// The port a redis-server listens on, from the process title it sets
/// (`redis-server 127.0.0.1:PORT`).
fn redis_port(pid: u32) -> u16 {
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("cmdline");
    cmdline
        .split(['\0', ' '])
        .find_map(|part| part.strip_prefix("127.0.0.1:"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {cmdline:?}"))
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let top = Command::new(allot_binary()).arg("--help").output().expect("allot --help");
    assert!(top.status.success());
    assert!(String::from_utf8_lossy(&top.stdout).contains("serve"));
    let events = Command::new(allot_binary()).args(["events", "--help"]).output().expect("allot events --help");
    let events = String::from_utf8_lossy(&events.stdout);
    for flag in ["--redis-url", "ALLOT_REDIS_URL", "--follow", "--after", "--group", "--consumer"] {
        assert!(events.contains(flag), "allot events --help does not mention {flag}:\n{events}");
    }
    let serve = Command::new(allot_binary()).args(["serve", "--help"]).output().expect("allot serve --help");
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in [
        "--listen",
        "ALLOT_LISTEN",
        "--redis-url",
        "ALLOT_REDIS_URL",
        "--data-dir",
        "ALLOT_DATA_DIR",
        "--admin-token",
        "ALLOT_ADMIN_TOKEN",
        "--edge-secret",
        "ALLOT_EDGE_SECRET",
        "--almost-full-percent",
        "--events-retained",
        "--finished-retention-seconds",
        "--log-format",
    ] {
        assert!(text.contains(flag), "allot serve --help does not mention {flag}:\n{text}");
    }
}

#[test]
fn dev_mode_refuses_a_non_loopback_address() {
    let output = Command::new(allot_binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--redis-url", "redis://127.0.0.1:1/"])
        .env_remove("ALLOT_ADMIN_TOKEN")
        .env_remove("ALLOT_EDGE_SECRET")
        .output()
        .expect("allot runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0"), "{stderr}");
}

#[test]
fn a_missing_redis_server_is_explained_in_one_line() {
    let output = Command::new(allot_binary())
        .args(["serve", "--data-dir", &temp_dir("no-redis").to_string_lossy()])
        .env("PATH", "/nonexistent")
        .env_remove("ALLOT_REDIS_URL")
        .output()
        .expect("allot runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("redis-server is not installed") && last.contains("apt-get install -y redis-server"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allot_serve_supervises_its_own_redis_and_stops_cleanly() {
    let data_dir = temp_dir("embedded");
    let mut served = serve(&data_dir, &[]);
    wait_ready(&served.base).await;
    let api = Api::new(&served.base);
    assert_eq!(api.set_capacity("embedded", &[("vans", "2026-12-01", 3)]).await.status, 200);
    let placed = api.reserve("embedded", &one_item("vans", "2026-12-01", 2), None).await;
    assert_eq!(placed.status, 201);
    assert!(data_dir.join("appendonlydir").is_dir(), "the AOF lives under the data directory");

    // /metrics is valid Prometheus text, as promtool reads it.
    let metrics = crate::common::client().get(format!("{}/metrics", served.base)).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for name in ["allot_http_requests_total", "allot_http_request_duration_seconds_bucket", "allot_reservations_total"]
    {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (cargo xtask test installs prometheus)");
    promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Kill the redis-server: the coordinator answers 503, restarts it, and the data is there.
    tokio::time::sleep(Duration::from_millis(1_200)).await; // past one AOF fsync (everysec)
    let first_pid = redis_pid(&data_dir);
    assert!(Command::new("kill").args(["-KILL", &first_pid.to_string()]).status().expect("kill").success());
    let deadline = Instant::now() + START_TIMEOUT;
    let mut saw_unavailable = false;
    loop {
        let answer = send(api.http.get(format!("{}/readyz", served.base))).await;
        if answer.status == 503 {
            saw_unavailable = true;
            assert_eq!(answer.slug(), "unavailable");
        }
        if answer.status == 200 && redis_pid(&data_dir) != first_pid {
            break;
        }
        assert!(Instant::now() < deadline, "redis-server was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not asserted: on a loaded machine the restart (100 ms backoff) can finish before a probe
    // gets through; the restart itself (a new pid, ready again) is what this checks.
    let _ = saw_unavailable;
    let id = placed.body["id"].as_str().expect("id");
    let read = api.reservation("embedded", id).await;
    assert_eq!((read.status, read.body["status"].as_str()), (200, Some("confirmed")), "data survived the restart");
    assert_eq!(api.used("embedded", "vans", "2026-12-01").await, 2);

    // SIGTERM with requests in flight (Redis paused for writes): they are answered, then the
    // coordinator exits 0 and takes its redis-server with it.
    let second_pid = redis_pid(&data_dir);
    let redis_port = redis_port(second_pid);
    let mut connection = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/"))
        .expect("url")
        .get_connection()
        .expect("embedded redis answers");
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(800).arg("WRITE").query(&mut connection).expect("pause");
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.reserve("embedded", &one_item("vans", "2026-12-01", 1), None).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let statuses: Vec<u16> = futures_join(in_flight).await;
    // Capacity 3, 2 used: exactly one of the eight fits; none fails for the shutdown.
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = served.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "allot did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "allot exited with {status}");
    assert!(!alive(second_pid), "the embedded redis-server stopped with the coordinator");

    // Started again on the same directory, the data is still there (the AOF was flushed).
    let again = serve(&data_dir, &[]);
    wait_ready(&again.base).await;
    assert_eq!(Api::new(&again.base).reservation("embedded", id).await.status, 200);
    drop(again);
    let _ = std::fs::remove_dir_all(&data_dir);
}
