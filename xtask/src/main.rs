//! Project chores (the `cargo xtask` pattern): `dev` runs the local stack (`--ha`: with
//! replicas and Sentinels), `test` runs every check CI runs, `chaos` runs the fault scenarios
//! many times, `bench` the benchmarks. Each installs what is missing first, and only that.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use allot_fixtures::coordinator::Output;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Debian packages the project needs, with the command that shows each is installed.
const APT_PACKAGES: [(&str, &str); 3] =
    [("redis-server", "redis-server"), ("promtool", "prometheus"), ("chromium", "chromium")];
/// Debian's PostgreSQL server (a baseline of the benchmarks), with a command it installs.
const POSTGRESQL_PACKAGE: (&str, &str) = ("pg_ctlcluster", "postgresql");
/// The WebAssembly target the edge builds for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Crates that must build for the WebAssembly target.
const WASM_CRATES: [&str; 2] = ["allot-shared", "allot-edge"];
/// worker-build, pinned: it turns the edge crate into a Worker (see ../shared/EDGE-TOOLCHAIN.md).
const WORKER_BUILD_VERSION: &str = "0.8.7";
/// The oldest Node.js the pinned wrangler runs on.
const NODE_MAJOR_MIN: u32 = 20;

/// Allot's project chores.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Debug, Subcommand)]
enum Chore {
    /// Install what is missing, build, and run the local stack: the coordinator on
    /// 127.0.0.1:8080 with its embedded Redis (data in ./data) and the edge on 8787. Ctrl-C
    /// stops it.
    Dev {
        /// The highly available stack instead: a Redis primary, two replicas and three
        /// Sentinels (scratch data, gone at exit), coordinators on 8080 and 8081 following
        /// them, and the edge in front of both. Prints how to kill the primary and watch the
        /// failover.
        #[arg(long)]
        ha: bool,
    },
    /// Install what is missing, then run every check CI runs: rustfmt, clippy -D warnings,
    /// the wasm32 build, the edge worker build, and all tests (unit and integration, against
    /// real redis-server, coordinator and workerd).
    Test,
    /// Build the edge worker (edge/build/) with local tools only, installing the pinned
    /// worker-build, the wasm-bindgen CLI matching Cargo.lock, and the npm tools if missing.
    EdgeBuild,
    /// Run the fault scenarios (tests/it/ha.rs) many times, one at a time: each scenario's
    /// control once, then `--trials` protected trials, each printing its report (attempts,
    /// acknowledged, lost, doubled, time from the fault to the first acknowledgement). About
    /// 10 s a trial; CI runs 2 of each.
    Chaos {
        /// Protected trials per scenario.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
        trials: u32,
        /// Only the scenarios whose test name contains this (e.g. `zombie`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Build release binaries and run the benchmarks (own Redis, coordinator and edge on
    /// loopback; bounded in time); prints a table and ratios, writes target/bench/*.json.
    Bench {
        /// Short runs (2 s per scenario and sweep step) to check a claim quickly.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Chore::Dev { ha: false } => dev(),
        Chore::Dev { ha: true } => dev_ha(),
        Chore::Chaos { trials, only } => chaos(trials, only.as_deref()),
        Chore::Test => test(),
        Chore::EdgeBuild => edge_build(),
        Chore::Bench { quick } => bench(quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root. `cargo run` sets CARGO_MANIFEST_DIR for the process it starts, which is
/// right even when this binary was built from another checkout sharing the target directory.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or(manifest_dir)
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(step: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {step}");
    let status = command.status().with_context(|| format!("starting: {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    which(program).is_some()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// `apt-get update` and `apt-get install -y` for the packages whose command is missing.
fn ensure_apt_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = !is_root() && on_path("sudo");
    let apt = |args: &[&str]| {
        let mut command = if sudo { Command::new("sudo") } else { Command::new("apt-get") };
        if sudo {
            command.arg("apt-get");
        }
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run("apt-get update", &mut apt(&["update", "-q"]))?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    run(&format!("apt-get install {}", missing.join(" ")), &mut apt(&install))
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(output) if String::from_utf8_lossy(&output.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => run("rustup target add", Command::new("rustup").args(["target", "add", WASM_TARGET])),
        Err(_) => bail!("rustup is not installed: install Rust with rustup, then run this again"),
    }
}

fn test() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    ensure_apt_packages(&APT_PACKAGES)?;
    ensure_wasm_target()?;
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "cargo clippy --all-targets -D warnings",
        cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )?;
    let mut wasm = cargo();
    wasm.args(["clippy", "--target", WASM_TARGET]);
    for krate in WASM_CRATES {
        wasm.args(["-p", krate]);
    }
    run("wasm32 build of the shared and edge crates", wasm.args(["--", "-D", "warnings"]))?;
    run("build the allot binary", cargo().args(["build", "-p", "allot-core", "--bin", "allot"]))?;
    edge_build()?;
    let (passed, failed) = run_tests(cargo().args(["test", "--workspace"]))?;
    eprintln!("==> all checks passed in {:.0} s", started.elapsed().as_secs_f64());
    // One closing line for all test binaries, so a reader of the log sees the total.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn run_tests(command: &mut Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("==> cargo test");
    let mut child = command.stdout(std::process::Stdio::piped()).spawn().context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            let count = |label: &str| {
                result
                    .split(';')
                    .find_map(|part| part.trim().strip_suffix(label).map(str::trim))
                    .and_then(|n| n.split_whitespace().last())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        bail!("cargo test failed ({status})");
    }
    Ok((passed, failed))
}

/// The version of a command-line tool, from `<tool> --version` (last word of the first line).
fn tool_version(tool: &str) -> Option<String> {
    let output = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().next()?.split_whitespace().last().map(str::to_owned)
}

/// The version of a package in Cargo.lock.
fn locked_version(package: &str) -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_owned());
        }
    }
    bail!("{package} is not in Cargo.lock")
}

fn ensure_cargo_tool(binary: &str, package: &str, version: &str, locked: bool) -> anyhow::Result<()> {
    if tool_version(binary).as_deref() == Some(version) {
        return Ok(());
    }
    let mut install = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    install.args(["install", package, "--version", version]);
    if locked {
        install.arg("--locked");
    }
    run(&format!("cargo install {package} {version} (once; a few minutes)"), &mut install)
}

fn ensure_node_tools() -> anyhow::Result<()> {
    let major = tool_version("node")
        .and_then(|v| v.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok()));
    match major {
        Some(major) if major >= NODE_MAJOR_MIN => {}
        Some(major) => bail!("Node.js {major} is too old for wrangler: install Node.js {NODE_MAJOR_MIN} or newer"),
        None => bail!("Node.js is not installed: install Node.js {NODE_MAJOR_MIN} or newer (with npm)"),
    }
    let installed = root().join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&installed), std::fs::metadata(root().join("package-lock.json"))) {
        (Ok(done), Ok(lock)) => done.modified().ok() >= lock.modified().ok(),
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    run("npm ci", Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(root()))
}

/// Builds the edge worker into edge/build/ and reports the Wasm size.
fn edge_build() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    ensure_node_tools()?;
    ensure_cargo_tool("worker-build", "worker-build", WORKER_BUILD_VERSION, true)?;
    // The locked build of wasm-bindgen-cli fails; the CLI must match the library exactly.
    ensure_cargo_tool("wasm-bindgen", "wasm-bindgen-cli", &locked_version("wasm-bindgen")?, false)?;
    let wasm_bindgen = which("wasm-bindgen").context("wasm-bindgen is not on PATH after installing it")?;
    let modules = root().join("node_modules");
    run(
        "worker-build --release (edge/)",
        Command::new("worker-build")
            .arg("--release")
            .current_dir(root().join("edge"))
            .env("WASM_BINDGEN_BIN", wasm_bindgen)
            .env("WASM_OPT_BIN", modules.join(".bin/wasm-opt"))
            .env("ESBUILD_BIN", modules.join("@esbuild/linux-x64/bin/esbuild")),
    )?;
    let wasm = root().join("edge/build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).with_context(|| format!("{} was not built", wasm.display()))?.len();
    let gzip = Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output().context("gzip")?.stdout.len();
    eprintln!("==> edge worker: {} KiB Wasm, {} KiB gzipped", raw / 1024, gzip / 1024);
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()))
}

/// Waits until `GET path` on 127.0.0.1:`port` answers 200, up to `timeout`.
fn wait_http_ok(port: u16, path: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut status_line = [0u8; 12];
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut status_line).is_ok()
                && &status_line == b"HTTP/1.1 200"
            {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("nothing answered 200 on 127.0.0.1:{port}{path} within {} s", timeout.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn secret_from_env_or_new(name: &str) -> String {
    std::env::var(name).ok().filter(|t| !t.is_empty()).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

fn bench(quick: bool) -> anyhow::Result<()> {
    ensure_apt_packages(&[APT_PACKAGES[0], POSTGRESQL_PACKAGE])?;
    run(
        "build release binaries",
        // --bins, not --bin allot: that would select only the binary named allot.
        cargo().args(["build", "--release", "-p", "allot-core", "-p", "allot-bench", "--bins"]),
    )?;
    edge_build()?;
    // Quick: every scenario and baseline, briefly.
    let (seconds, sweep_seconds) = if quick { ("2", "2") } else { ("10", "5") };
    run(
        "allot-bench",
        Command::new(root().join("target/release/allot-bench"))
            .args(["--root", &root().to_string_lossy(), "--seconds", seconds, "--sweep-seconds", sweep_seconds])
            .args(["--allot", &root().join("target/release/allot").to_string_lossy()])
            .args(["--out", &root().join("target/bench/results.json").to_string_lossy()])
            .args(["--plots", &root().join("target/bench").to_string_lossy()])
            .current_dir(root()),
    )
}

/// Stops a child with SIGTERM (so it can stop what it started), waiting for it to exit.
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Runs the local stack: the coordinator (with its embedded Redis) on 8080 and the edge in
/// workerd on 8787, until Ctrl-C (which reaches both: they share the terminal's process group).
fn dev() -> anyhow::Result<()> {
    const COORDINATOR_PORT: u16 = 8080;
    const EDGE_PORT: u16 = 8787;
    let (token, edge_secret) = prepare_dev()?;
    // wrangler dev reads the edge's secret from .dev.vars (git-ignored).
    std::fs::write(root().join(".dev.vars"), format!("ALLOT_EDGE_SECRET={edge_secret}\n")).context(".dev.vars")?;
    let mut coordinator = Command::new(root().join("target/release/allot"))
        .args(["serve", "--listen", &format!("127.0.0.1:{COORDINATOR_PORT}")])
        .env("ALLOT_ADMIN_TOKEN", &token)
        .env("ALLOT_EDGE_SECRET", &edge_secret)
        .current_dir(root())
        .spawn()
        .context("starting allot serve")?;
    if let Err(error) = wait_http_ok(COORDINATOR_PORT, "/readyz", std::time::Duration::from_secs(60)) {
        stop(&mut coordinator);
        return Err(error.context("the coordinator did not start"));
    }
    let mut edge = Command::new(root().join("node_modules/.bin/wrangler"))
        .args(["dev", "--ip", "127.0.0.1", "--port", &EDGE_PORT.to_string()])
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .current_dir(root())
        .spawn()
        .context("starting wrangler dev")?;
    if let Err(error) = wait_http_ok(EDGE_PORT, "/healthz", std::time::Duration::from_secs(90)) {
        stop(&mut edge);
        stop(&mut coordinator);
        return Err(error.context("the edge did not start"));
    }
    eprintln!();
    eprintln!("  coordinator  http://127.0.0.1:{COORDINATOR_PORT}   (admin token {token})");
    eprintln!("  edge         http://127.0.0.1:{EDGE_PORT}   (no credentials; signs what it forwards)");
    eprintln!("  booking page http://127.0.0.1:{EDGE_PORT}/s/hub-1   (after setting capacity: see the README)");
    eprintln!("  dashboard    http://127.0.0.1:{COORDINATOR_PORT}/dashboard   (site hub-1, the admin token above)");
    eprintln!("  try          curl http://127.0.0.1:{EDGE_PORT}/v1/sites/demo/availability");
    eprintln!("  Ctrl-C stops both (the embedded Redis keeps its data in ./data)");
    eprintln!();
    let coordinator_status = coordinator.wait()?;
    let _ = edge.wait();
    if !coordinator_status.success() && coordinator_status.code().is_some() {
        bail!("allot serve exited with {coordinator_status}");
    }
    Ok(())
}

/// The fault scenarios, `trials` protected trials each (see `Chore::Chaos`).
fn chaos(trials: u32, only: Option<&str>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    ensure_apt_packages(&APT_PACKAGES[..1])?;
    run("build the allot binary", cargo().args(["build", "-p", "allot-core", "--bin", "allot"]))?;
    let filter = format!("ha::{}", only.unwrap_or_default());
    eprintln!("==> fault scenarios matching {filter}: each control once, then {trials} protected trials");
    let mut command = cargo();
    command.args(["test", "-p", "allot-tests", "--test", "it", &filter, "--", "--test-threads", "1", "--nocapture"]);
    let (passed, failed) = run_tests(command.env("ALLOT_CHAOS_TRIALS", trials.to_string()))?;
    if passed == 0 {
        bail!("no scenario matches {filter}");
    }
    eprintln!("==> chaos: {passed} scenarios passed, {failed} failed, in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What both dev stacks need first: redis-server installed, the release binary and the worker
/// built, and the admin token and edge secret (from the environment, or fresh).
fn prepare_dev() -> anyhow::Result<(String, String)> {
    ensure_apt_packages(&APT_PACKAGES[..1])?;
    run("build the allot binary", cargo().args(["build", "--release", "-p", "allot-core", "--bin", "allot"]))?;
    edge_build()?;
    Ok((secret_from_env_or_new("ALLOT_ADMIN_TOKEN"), secret_from_env_or_new("ALLOT_EDGE_SECRET")))
}

/// `cargo xtask dev --ha`: the highly available stack on loopback until Ctrl-C.
fn dev_ha() -> anyhow::Result<()> {
    const COORDINATOR_PORTS: [u16; 2] = [8080, 8081];
    const EDGE_PORT: u16 = 8787;
    let (token, edge_secret) = prepare_dev()?;
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let runtime = tokio::runtime::Runtime::new().context("a tokio runtime")?;
    runtime.block_on(async {
        eprintln!("==> a Redis primary, two replicas and three Sentinels (docs/redis/*.conf)");
        let stack = allot_fixtures::HaStack::start(false).await;
        let sentinels = stack.sentinel_addresses().join(",");
        let binary = root().join("target/release/allot");
        let args = vec!["--redis-sentinels".to_owned(), sentinels.clone()];
        let env =
            [("ALLOT_ADMIN_TOKEN", token.as_str()), ("ALLOT_EDGE_SECRET", edge_secret.as_str()), ("RUST_LOG", &log)];
        let coordinators: Vec<_> = COORDINATOR_PORTS
            .iter()
            .map(|port| allot_fixtures::CoordinatorProcess::start(&binary, Some(*port), &args, &env, Output::Terminal))
            .collect();
        for coordinator in &coordinators {
            coordinator.ready().await;
        }
        let dir = root().join("target/dev-ha");
        let bases: Vec<&str> = coordinators.iter().map(|c| c.base.as_str()).collect();
        let root = root();
        let options = allot_fixtures::EdgeOptions {
            root: &root,
            coordinators: &bases,
            secret: &edge_secret,
            vars: &[],
            port: Some(EDGE_PORT),
            dir: &dir,
            scratch: false,
            to_terminal: true,
        };
        let edge = allot_fixtures::EdgeProcess::start(options).map_err(anyhow::Error::msg)?;
        edge.wait_healthy(std::time::Duration::from_secs(90)).await.map_err(anyhow::Error::msg)?;
        let pid = |node: &allot_fixtures::RedisNode| node.pid().map_or("?".to_owned(), |p| p.to_string());
        let first_sentinel = stack.sentinels[0].port;
        eprintln!();
        eprintln!("  redis primary  127.0.0.1:{}  pid {}", stack.primary.port, pid(&stack.primary));
        for replica in &stack.replicas {
            eprintln!("  redis replica  127.0.0.1:{}  pid {}", replica.port, pid(replica));
        }
        eprintln!("  sentinels      {sentinels}  (master name allot)");
        for coordinator in &coordinators {
            eprintln!("  coordinator    {}   (admin token {token})", coordinator.base);
        }
        eprintln!("  edge           http://127.0.0.1:{EDGE_PORT}   (in front of both coordinators)");
        eprintln!();
        eprintln!("  kill the primary:   kill -9 {}", pid(&stack.primary));
        eprintln!("  watch the failover: redis-cli -p {first_sentinel} sentinel get-master-addr-by-name allot");
        eprintln!("                      curl -s http://127.0.0.1:8080/metrics | grep allot_redis_primary");
        eprintln!("                      target/release/allot events hub-1 --follow --redis-sentinels {sentinels}");
        eprintln!("  writes resume on the promoted replica within about 2 s; the old primary stays down.");
        eprintln!("  Ctrl-C stops everything (the Redis data is scratch and removed)");
        eprintln!();
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        drop(edge);
        for mut coordinator in coordinators {
            coordinator.stop();
        }
        drop(stack);
        Ok(())
    })
}
