//! The image build path without a container engine: what
//! deploy/Containerfile's builder stage COPYs, copied alone (minus what the
//! ignore file keeps out of the build context) into an empty folder, must
//! be a workspace cargo accepts with the locked dependencies; and the
//! compose setup in deploy/compose/ must parse and name only files that
//! exist.
//!
//! Only `cargo metadata` runs there, offline: `cargo check` of the copy
//! would compile every dependency again into a target folder of its own
//! (measured: 3 min 44 s and 532 MB on a shared 2-core host), and what goes wrong with a
//! Containerfile is a missing workspace member or lock file, which
//! metadata already catches.
//!
//! Run: `cargo test -p pgvigil-integration --test container`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::repo::{repo_root, run_promtool};
use pgvigil_integration::serde_json::{self, Value};
use pgvigil_integration::vigil::binary_path;
use pgvigil_integration::{shared_cluster, timed, Pgvigil};

/// Instructions of the Containerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// The builder stage: `(sources, destination)` of each COPY, and the cargo
/// command of its RUN.
struct BuilderStage {
    copies: Vec<(Vec<String>, String)>,
    cargo_args: Vec<String>,
}

fn builder_stage(text: &str) -> Result<BuilderStage> {
    let mut in_builder = false;
    let mut copies = Vec::new();
    let mut cargo_args = Vec::new();
    for ins in instructions(text) {
        let words: Vec<&str> = ins.split_whitespace().collect();
        let Some(keyword) = words.first() else {
            continue;
        };
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => {
                in_builder = words.len() == 4 && words[2].eq_ignore_ascii_case("as");
                in_builder &= words.get(3) == Some(&"builder");
            }
            "COPY" if in_builder => {
                let args: Vec<&str> = words[1..]
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                ensure!(args.len() >= 2, "COPY without a destination: {ins}");
                let (dest, sources) = args.split_last().expect("two or more");
                copies.push((
                    sources.iter().map(|s| s.to_string()).collect(),
                    dest.to_string(),
                ));
            }
            "RUN" if in_builder => {
                let cmd = ins[3..].split("&&").next().unwrap_or_default();
                let cmd: Vec<&str> = cmd.split_whitespace().collect();
                if cmd.first() == Some(&"cargo") {
                    cargo_args = cmd[1..].iter().map(|s| s.to_string()).collect();
                }
            }
            _ => {}
        }
    }
    ensure!(
        !copies.is_empty(),
        "no COPY in a stage `FROM ... AS builder`"
    );
    ensure!(
        !cargo_args.is_empty(),
        "no `RUN cargo ...` in the builder stage"
    );
    Ok(BuilderStage { copies, cargo_args })
}

/// Patterns of an ignore file, in the subset this repository uses:
/// `name/` (top level), `**/name/` (any depth), `**/*.ext`, `*.ext`.
struct Ignore {
    patterns: Vec<String>,
}

impl Ignore {
    fn load(path: &Path) -> Result<Ignore> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Ok(Ignore { patterns })
    }

    /// `rel`: a path relative to the build context, `/`-separated.
    fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        self.patterns.iter().any(|p| {
            let (any_depth, p) = match p.strip_prefix("**/") {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            let p = p.trim_end_matches('/');
            let matches = |name: &str| match p.strip_prefix('*') {
                Some(suffix) => name.ends_with(suffix),
                None => name == p,
            };
            if any_depth || p.starts_with('*') {
                parts.iter().any(|name| matches(name))
            } else {
                parts.first().is_some_and(|name| matches(name))
            }
        })
    }
}

fn copy_tree(root: &Path, rel: &str, to: &Path, ignore: &Ignore) -> Result<()> {
    if ignore.excludes(rel) {
        return Ok(());
    }
    let from = root.join(rel);
    let meta = std::fs::metadata(&from).with_context(|| format!("COPY source {rel}"))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(&from)? {
            let name = entry?.file_name();
            let name = name.to_str().context("non-UTF-8 file name")?;
            copy_tree(root, &format!("{rel}/{name}"), &to.join(name), ignore)?;
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, to).with_context(|| format!("copying {rel}"))?;
    }
    Ok(())
}

/// Copies the builder stage's COPY sources into `dir`, as the build would
/// see them under its WORKDIR. `skip`: a source left out (to show the
/// check fails without it).
fn stage_context(stage: &BuilderStage, dir: &Path, skip: Option<&str>) -> Result<()> {
    let root = repo_root();
    let ignore = Ignore::load(&root.join(".containerignore"))?;
    for (sources, dest) in &stage.copies {
        let dest = dest.trim_start_matches("./").trim_end_matches('/');
        for source in sources {
            ensure!(
                root.join(source).exists(),
                "deploy/Containerfile copies `{source}`, which does not exist"
            );
            if Some(source.as_str()) == skip {
                continue;
            }
            let name = Path::new(source).file_name().context("COPY source name")?;
            let target = if dest.is_empty() || sources.len() > 1 {
                dir.join(dest).join(name)
            } else {
                dir.join(dest)
            };
            copy_tree(&root, source, &target, &ignore)?;
        }
    }
    Ok(())
}

/// `cargo metadata` in `dir`, offline and locked as the build runs.
fn cargo_metadata(dir: &Path, extra: &[&str]) -> Result<std::process::Output> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(extra)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .context("running cargo metadata")
}

fn read_stage() -> Result<BuilderStage> {
    let path = repo_root().join("deploy/Containerfile");
    builder_stage(&std::fs::read_to_string(&path).context("reading deploy/Containerfile")?)
}

#[test]
fn containerfile_copies_a_workspace_cargo_accepts_locked_and_offline() -> Result<()> {
    let stage = read_stage()?;
    for flag in ["--locked", "--release"] {
        ensure!(
            stage.cargo_args.iter().any(|a| a == flag),
            "the build command lacks {flag}: cargo {:?}",
            stage.cargo_args
        );
    }
    let dir = tempfile::tempdir()?;
    stage_context(&stage, dir.path(), None)?;
    ensure!(
        !dir.path().join("target").exists() && !dir.path().join("benches/target").exists(),
        "a target folder was copied into the build context"
    );

    let out = cargo_metadata(dir.path(), &["--no-deps"])?;
    ensure!(
        out.status.success(),
        "cargo metadata --no-deps on the copied context failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    ensure!(
        names.contains(&"pgvigil"),
        "no pgvigil package in {names:?}"
    );

    // The whole graph, resolved against Cargo.lock: a lock file out of
    // step with the copied manifests fails here as `--locked` fails the build.
    let out = cargo_metadata(dir.path(), &[])?;
    ensure!(
        out.status.success(),
        "cargo metadata --locked on the copied context failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_workspace_member_left_out_of_the_copy_fails_the_check() -> Result<()> {
    let stage = read_stage()?;
    let dir = tempfile::tempdir()?;
    stage_context(&stage, dir.path(), Some("benches"))?;
    let out = cargo_metadata(dir.path(), &["--no-deps"])?;
    ensure!(
        !out.status.success(),
        "cargo metadata passed without the benches member"
    );
    Ok(())
}

#[test]
fn ignore_files_are_identical_and_keep_build_output_out_of_the_context() -> Result<()> {
    let root = repo_root();
    let a = std::fs::read(root.join(".containerignore")).context(".containerignore")?;
    let b = std::fs::read(root.join(".dockerignore")).context(".dockerignore")?;
    ensure!(a == b, ".containerignore and .dockerignore differ");
    let ignore = Ignore::load(&root.join(".containerignore"))?;
    for path in [
        "target",
        "target/debug/pgvigil",
        "benches/target",
        "bench-results",
        ".git",
        "benches/load/__pycache__",
        "benches/load/__pycache__/x.cpython-311.pyc",
        "deploy/node_modules",
    ] {
        ensure!(ignore.excludes(path), "{path} is sent as build context");
    }
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "crates/pgvigil/src/main.rs",
        "benches/Cargo.toml",
    ] {
        ensure!(
            !ignore.excludes(path),
            "{path} is kept out of the build context"
        );
    }
    Ok(())
}

/// Build contexts, Containerfiles and bind-mounted host paths of
/// compose.yaml, relative to deploy/compose/ (as compose resolves them),
/// and the pgvigil service's health check.
fn compose_facts() -> Result<Value> {
    let script = r#"
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
paths = []
for name, svc in doc["services"].items():
    build = svc.get("build")
    if isinstance(build, dict):
        ctx = build.get("context", ".")
        paths.append(ctx)
        if "dockerfile" in build:
            paths.append(ctx.rstrip("/") + "/" + build["dockerfile"])
    elif isinstance(build, str):
        paths.append(build)
    for vol in svc.get("volumes", []):
        src = vol.get("source") if isinstance(vol, dict) else vol.split(":")[0]
        if src.startswith(".") or src.startswith("/"):
            paths.append(src)
for section in ("configs", "secrets"):
    for name, item in (doc.get(section) or {}).items():
        if "file" in item:
            paths.append(item["file"])
check = doc["services"].get("pgvigil", {}).get("healthcheck", {}).get("test")
print(json.dumps({"paths": paths, "pgvigil_healthcheck": check}))
"#;
    let file = repo_root().join("deploy/compose/compose.yaml");
    let out = Command::new(pgvigil_integration::python::interpreter())
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .context("running python3 (with PyYAML) on compose.yaml")?;
    if !out.status.success() {
        bail!(
            "compose.yaml does not parse:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn compose_file_parses_and_every_file_it_names_exists() -> Result<()> {
    let base = repo_root().join("deploy/compose");
    let facts = compose_facts()?;
    let paths: Vec<String> = serde_json::from_value(facts["paths"].clone())?;
    ensure!(
        paths.iter().any(|p| p.ends_with("deploy/Containerfile")),
        "compose.yaml does not build deploy/Containerfile: {paths:?}"
    );
    for path in &paths {
        ensure!(
            base.join(path).exists(),
            "compose.yaml names {path}, which does not exist"
        );
    }
    // Repeated there because podman drops HEALTHCHECK from OCI images.
    let mut image_check = vec!["CMD".to_string()];
    image_check.extend(healthcheck_command()?);
    ensure!(
        facts["pgvigil_healthcheck"] == serde_json::json!(image_check),
        "the pgvigil service's healthcheck differs from the image's HEALTHCHECK"
    );
    Ok(())
}

#[test]
fn compose_prometheus_config_passes_promtool() {
    run_promtool(
        &repo_root().join("deploy/compose"),
        &["check", "config", "prometheus.yml"],
    );
}

/// The HEALTHCHECK command of the runtime stage, as the argument list of
/// its exec form.
fn healthcheck_command() -> Result<Vec<String>> {
    let path = repo_root().join("deploy/Containerfile");
    let text = std::fs::read_to_string(&path).context("reading deploy/Containerfile")?;
    let ins = instructions(&text)
        .into_iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .context("no HEALTHCHECK in deploy/Containerfile")?;
    let json = &ins[ins
        .find("CMD [")
        .context("HEALTHCHECK without an exec-form CMD")?
        + 4..];
    serde_json::from_str(json).with_context(|| format!("HEALTHCHECK CMD {json}"))
}

const TOKEN: &str = "compose-token-5d2e";

/// The compose stack's pgvigil.toml, pointed at the test cluster, with the
/// token from a file as a mounted secret would give it: pgvigil starts,
/// the API wants that token, and the image's HEALTHCHECK command (run
/// here with the listener's port) passes against /healthz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_config_starts_with_the_token_from_a_file_and_passes_the_healthcheck() -> Result<()>
{
    timed(Duration::from_secs(60), async {
        let cluster = shared_cluster();
        let config = std::fs::read_to_string(repo_root().join("deploy/compose/pgvigil.toml"))?
            .replace("host = \"postgres\"", "host = \"127.0.0.1\"")
            .replace("port = 5432", &format!("port = {}", cluster.port()));
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("admin_token");
        std::fs::write(&token_file, format!("{TOKEN}\n"))?;
        let vigil = Pgvigil::builder_with_config(cluster, config)
            .env(
                "PGVIGIL_ADMIN_TOKEN_FILE",
                token_file.to_str().context("temp path")?,
            )
            .spawn()
            .await?;

        let mut check = healthcheck_command()?;
        let script = check.last_mut().context("empty HEALTHCHECK")?;
        ensure!(
            script.contains("9930"),
            "HEALTHCHECK does not probe port 9930"
        );
        *script = script.replace("9930", &vigil.admin_port().to_string());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Refused connections while the admin listener starts are expected.
            let status = Command::new(&check[0])
                .args(&check[1..])
                .stderr(std::process::Stdio::null())
                .status()?;
            if status.success() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the HEALTHCHECK command fails ({status}) against a running pgvigil; stderr:\n{}",
                vigil.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let open = vigil.http_get("/api/queries", &[]).await?;
        ensure!(open.status == 401, "API without the token: {}", open.status);
        let bearer = format!("Bearer {TOKEN}");
        let with = vigil
            .http_get("/api/queries", &[("Authorization", bearer.as_str())])
            .await?;
        ensure!(
            with.status == 200,
            "API with the file's token: {}",
            with.status
        );
        ensure!(
            !vigil.stderr().contains(TOKEN),
            "the token appears in pgvigil's log"
        );
        Ok(())
    })
    .await
}

/// A token file that cannot be used stops pgvigil at startup (exit 2,
/// as any bad setting), naming the file and never printing its content.
#[test]
fn unusable_admin_token_file_exits_2_naming_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n")?;
    let missing = dir.path().join("missing");
    for file in [&empty, &missing] {
        let out = Command::new(binary_path())
            .args(["--listen", "127.0.0.1:1", "--admin-listen", "0.0.0.0:1"])
            .env_remove("PGVIGIL_ADMIN_TOKEN")
            .env("PGVIGIL_ADMIN_TOKEN_FILE", file)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2),
            "{}: exit {:?}, expected 2; stderr: {stderr}",
            file.display(),
            out.status.code()
        );
        ensure!(
            stderr.contains(&*file.to_string_lossy()),
            "the error does not name {}: {stderr}",
            file.display()
        );
    }
    Ok(())
}
