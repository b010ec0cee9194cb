//! Finding a PostgreSQL installation to run the demo's throwaway cluster.
//!
//! Debian and Ubuntu put the server programs in
//! `/usr/lib/postgresql/<major>/bin` and only the client wrappers on PATH,
//! so PATH alone misses the most common install; it is still searched
//! first, so that a PostgreSQL the user chose (a source build, Homebrew, a
//! `PATH=` prefix) wins over whatever the package manager left behind.

use std::path::{Path, PathBuf};

/// What the demo runs from the installation.
const PROGRAMS: [&str; 2] = ["initdb", "postgres"];

/// The package line printed when nothing is found: the same packages
/// scripts/ensure-postgres.sh installs, hypopg included so the advisor can
/// try indexes hypothetically.
pub const INSTALL_HINT: &str =
    "apt-get install postgresql-15 postgresql-contrib postgresql-15-hypopg";

/// No usable installation.
#[derive(Debug)]
pub struct NotFound {
    pattern: String,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgreSQL was not found: no initdb and postgres on PATH nor in {}.\n\
             Install it (Debian/Ubuntu, as root):\n  {INSTALL_HINT}\n\
             or point --pg-bin at the directory holding initdb and postgres.",
            self.pattern
        )
    }
}

impl std::error::Error for NotFound {}

/// The directory holding `initdb` and `postgres`: the first PATH entry that
/// has both, else the highest major version under `packages_root`
/// (`/usr/lib/postgresql` in production; a parameter for the tests).
pub fn find_bindir(
    path_var: Option<&std::ffi::OsStr>,
    packages_root: &Path,
) -> Result<PathBuf, NotFound> {
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            if has_programs(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(packages_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let version = parse_version(&name)?;
            let bin = entry.path().join("bin");
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| NotFound {
        pattern: format!("{}/*/bin", packages_root.display()),
    })
}

/// `15` or `9.6`, as the Debian directories are named; anything else is
/// not a version directory.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Whether `dir` holds the programs the demo runs.
pub fn has_programs(dir: &Path) -> bool {
    PROGRAMS.iter().all(|p| is_executable(&dir.join(p)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("pgvigil-locate-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// `dir` with executable `initdb` and `postgres` (or only `programs`).
        fn install(&self, dir: &str, programs: &[&str]) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let bin = self.0.join(dir);
            std::fs::create_dir_all(&bin).unwrap();
            for p in programs {
                let file = bin.join(p);
                std::fs::write(&file, "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            bin
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn path_of(dirs: &[&Path]) -> OsString {
        std::env::join_paths(dirs).unwrap()
    }

    #[test]
    fn a_postgresql_on_path_wins_over_the_packaged_ones() {
        let s = Scratch::new("path-wins");
        let own = s.install("own/bin", &PROGRAMS);
        s.install("lib/15/bin", &PROGRAMS);
        let empty = s.install("empty", &[]);
        let found = find_bindir(Some(&path_of(&[&empty, &own])), &s.0.join("lib")).unwrap();
        assert_eq!(found, own);
    }

    #[test]
    fn without_one_on_path_the_highest_packaged_major_version_is_used() {
        let s = Scratch::new("packaged");
        s.install("lib/9.6/bin", &PROGRAMS);
        let v15 = s.install("lib/15/bin", &PROGRAMS);
        s.install("lib/13/bin", &PROGRAMS);
        // A newer directory without the server (client package only) does not count.
        s.install("lib/16/bin", &["psql"]);
        // Neither does a directory that is not a version.
        s.install("lib/common/bin", &PROGRAMS);
        let path = path_of(&[&s.install("usr-bin", &["psql"])]);
        assert_eq!(find_bindir(Some(&path), &s.0.join("lib")).unwrap(), v15);
    }

    #[test]
    fn a_path_entry_with_only_some_programs_is_skipped() {
        let s = Scratch::new("partial");
        let partial = s.install("partial", &["initdb"]);
        let v15 = s.install("lib/15/bin", &PROGRAMS);
        let found = find_bindir(Some(&path_of(&[&partial])), &s.0.join("lib")).unwrap();
        assert_eq!(found, v15);
    }

    #[test]
    fn nothing_found_says_how_to_install_postgresql() {
        let s = Scratch::new("missing");
        let path = path_of(&[&s.install("bin", &["psql"])]);
        let err = find_bindir(Some(&path), &s.0.join("lib")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apt-get install postgresql-15"), "{text}");
        assert!(
            text.contains(&format!("{}/*/bin", s.0.join("lib").display())),
            "{text}"
        );
        assert!(find_bindir(None, &s.0.join("nowhere")).is_err());
    }
}
