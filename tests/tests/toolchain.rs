//! The stated minimum Rust toolchain: the workspace's `rust-version`
//! (Cargo.toml) must be at least the newest `rust-version` any locked
//! dependency declares, every member must inherit it, and README.md must
//! state the same figure and name the dependencies that set it. Older
//! toolchains are not installed here (nor reachable offline), so this is
//! checked on what `cargo metadata --locked` reports rather than by
//! building with the old compiler.
//!
//! Run: `cargo test -p pgvigil-integration --test toolchain`

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use pgvigil_integration::repo::repo_root;
use pgvigil_integration::serde_json::{self, Value};

/// "1.89" or "1.88.0" as comparable numbers; a missing patch is 0, as
/// Cargo reads it.
fn version(text: &str) -> Result<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|p| p.parse::<u64>());
    let mut next = || -> Result<u64> {
        parts
            .next()
            .unwrap_or(Ok(0))
            .with_context(|| format!("rust-version {text:?}"))
    };
    Ok((next()?, next()?, next()?))
}

fn metadata() -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(repo_root())
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata --locked failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The package ids of the workspace's members.
fn workspace_members(meta: &Value) -> Result<BTreeSet<&str>> {
    Ok(meta["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect())
}

/// The workspace's `rust-version`, read from Cargo.toml's [workspace.package].
fn workspace_rust_version() -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml"))?;
    let manifest: toml::Table = text.parse()?;
    Ok(manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .context("no [workspace.package] rust-version")?
        .to_string())
}

/// The dependencies with the highest `rust-version` among every package
/// the workspace members reach in the resolved graph (all platforms, all
/// dependency kinds: a Windows build or a test build needs them too).
fn newest_dependency_minimum(meta: &Value) -> Result<((u64, u64, u64), BTreeSet<String>)> {
    let packages: HashMap<&str, &Value> = meta["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .context("resolve.nodes")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let members = workspace_members(meta)?;
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = members.iter().copied().collect();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = nodes
            .get(id)
            .with_context(|| format!("{id} not resolved"))?;
        for dep in node["deps"].as_array().context("deps")? {
            todo.push(dep["pkg"].as_str().context("dep pkg")?);
        }
    }
    let mut newest = ((0, 0, 0), BTreeSet::new());
    for id in seen.iter().filter(|id| !members.contains(*id)) {
        let package = packages.get(id).with_context(|| format!("{id} unknown"))?;
        let Some(declared) = package["rust_version"].as_str() else {
            continue;
        };
        let v = version(declared)?;
        let name = format!(
            "{} {}",
            package["name"].as_str().unwrap_or("?"),
            package["version"].as_str().unwrap_or("?")
        );
        if v > newest.0 {
            newest = (v, BTreeSet::from([name]));
        } else if v == newest.0 {
            newest.1.insert(name);
        }
    }
    ensure!(seen.len() > members.len(), "no dependencies found");
    Ok(newest)
}

#[test]
fn workspace_rust_version_is_at_least_every_locked_dependencys() -> Result<()> {
    let stated = workspace_rust_version()?;
    let (needed, by) = newest_dependency_minimum(&metadata()?)?;
    ensure!(
        version(&stated)? >= needed,
        "rust-version = \"{stated}\" in Cargo.toml, but {by:?} need Rust {}.{}.{}",
        needed.0,
        needed.1,
        needed.2
    );
    Ok(())
}

/// Cargo enforces `rust-version` per package: a member that does not
/// inherit the workspace's declares no minimum at all.
#[test]
fn every_workspace_member_inherits_the_rust_version() -> Result<()> {
    let stated = workspace_rust_version()?;
    let meta = metadata()?;
    let members = workspace_members(&meta)?;
    let mut checked = 0;
    for package in meta["packages"].as_array().context("packages")? {
        if !members.contains(package["id"].as_str().unwrap_or_default()) {
            continue;
        }
        ensure!(
            package["rust_version"].as_str() == Some(stated.as_str()),
            "{} declares rust-version {}, not the workspace's {stated} \
             (add `rust-version.workspace = true`)",
            package["name"],
            package["rust_version"]
        );
        checked += 1;
    }
    ensure!(checked == members.len(), "not every member was found");
    Ok(())
}

/// README.md's "Rust X.Y or newer" is the workspace's figure, and names
/// the dependencies that require it.
#[test]
fn readme_states_the_workspace_minimum_and_what_sets_it() -> Result<()> {
    let stated = workspace_rust_version()?;
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let claims: Vec<&str> = readme
        .match_indices("Rust ")
        .filter_map(|(at, _)| {
            let rest = &readme[at + "Rust ".len()..];
            let figure = rest.split_whitespace().next()?;
            rest[figure.len()..]
                .starts_with(" or newer")
                .then_some(figure)
        })
        .collect();
    ensure!(
        !claims.is_empty(),
        "README.md states no \"Rust X.Y or newer\""
    );
    for claim in &claims {
        ensure!(
            *claim == stated,
            "README.md says Rust {claim} or newer, Cargo.toml's rust-version is {stated}"
        );
    }
    let (needed, by) = newest_dependency_minimum(&metadata()?)?;
    if version(&stated)? == needed {
        // A figure the dependencies set: README says which.
        let paragraph = &readme[readme.find(&format!("Rust {stated} or newer")).unwrap_or(0)..];
        let paragraph = &paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())];
        for package in &by {
            let name = package.split(' ').next().unwrap_or_default();
            ensure!(
                paragraph.contains(name),
                "README.md does not say that {package} sets the minimum: {paragraph:?}"
            );
        }
    }
    Ok(())
}
