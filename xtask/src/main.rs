//! Project chores (the `cargo xtask` pattern): `dev` runs the local stack, `test` runs every
//! check CI runs. Both install what is missing first, and only what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Debian packages the project needs, with the command that shows each is installed.
const APT_PACKAGES: [(&str, &str); 2] = [("redis-server", "redis-server"), ("promtool", "prometheus")];
/// The WebAssembly target the edge builds for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Crates that must build for the WebAssembly target.
const WASM_CRATES: [&str; 2] = ["allot-shared", "allot-edge"];

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
    /// 127.0.0.1:8080 with its embedded Redis (data in ./data). Ctrl-C stops it.
    Dev,
    /// Install what is missing, then run every check CI runs: rustfmt, clippy -D warnings,
    /// the wasm32 build, and all tests (unit and integration, against real redis-server).
    Test,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Chore::Dev => dev(),
        Chore::Test => test(),
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
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
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

fn dev() -> anyhow::Result<()> {
    ensure_apt_packages(&APT_PACKAGES[..1])?;
    run("build the allot binary", cargo().args(["build", "--release", "-p", "allot-core", "--bin", "allot"]))?;
    let token = std::env::var("ALLOT_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let listen = "127.0.0.1:8080";
    eprintln!();
    eprintln!("  coordinator  http://{listen}");
    eprintln!("  admin token  {token}");
    eprintln!("  try          curl -H 'Authorization: Bearer {token}' http://{listen}/v1/sites/demo/availability");
    eprintln!("  Ctrl-C stops it (the embedded Redis keeps its data in ./data)");
    eprintln!();
    let binary = root().join("target/release/allot");
    let status = Command::new(binary)
        .args(["serve", "--listen", listen])
        .env("ALLOT_ADMIN_TOKEN", &token)
        .current_dir(root())
        .status()
        .context("starting allot serve")?;
    // Ctrl-C reaches the coordinator too (same process group); it shuts down cleanly.
    if !status.success() && status.code().is_some() {
        bail!("allot serve exited with {status}");
    }
    Ok(())
}
