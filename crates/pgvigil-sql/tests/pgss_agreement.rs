//! pgvigil's fingerprints against PostgreSQL 15's pg_stat_statements.
//!
//! Runs every variant of every statement in `tests/corpus/statements.sql`
//! on a throwaway PostgreSQL 15 cluster with pg_stat_statements loaded,
//! reads the query id PostgreSQL gave each statement, and checks that two
//! statements share a pgvigil fingerprint exactly when they share a query
//! id, apart from the intended differences in [`DIFFERENCES`]. Each group
//! of the corpus that shows one of them says so (`-- @differs KEY`), and
//! the test fails if a declared difference does not actually show: the list
//! stays honest.
//!
//! The cluster comes from the integration harness (`pgvigil-integration`,
//! [`PgCluster`]). Needs the PostgreSQL 15 server binaries (`PG_BINDIR`,
//! default /usr/lib/postgresql/15/bin). As root, the server runs as the
//! `postgres` system user.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use pgvigil_integration::cluster::pg_bindir;
use pgvigil_integration::PgCluster;
use pgvigil_sql::{normalize, Fingerprint};
use tokio_postgres::{Client, SimpleQueryMessage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// pgvigil gives one fingerprint where PostgreSQL gives several ids.
    PgvigilMerges,
    /// pgvigil gives several fingerprints where PostgreSQL gives one id.
    PgvigilSplits,
}

/// The intended differences, each with why pgvigil differs on purpose.
const DIFFERENCES: &[(&str, Direction, &str)] = &[
    (
        "list-length",
        Direction::PgvigilMerges,
        "IN (...), ARRAY[...] and multi-row VALUES lists of constants collapse, so a \
         list's length never makes a new fingerprint (an ORM loading 3 or 30 ids runs one \
         query shape); PostgreSQL 15 jumbles every element (18 collapses IN and ARRAY \
         lists too).",
    ),
    (
        "utility-raw-text",
        Direction::PgvigilMerges,
        "PostgreSQL 15 derives the query id of a utility statement (BEGIN, SET, SHOW, DDL, \
         EXPLAIN, COPY, CALL, DO, ...) from its raw text, constants, whitespace, keyword \
         case and comments included; pgvigil normalizes them like every other statement, \
         as PostgreSQL 16 and later do for most of them.",
    ),
    (
        "constant-type",
        Direction::PgvigilMerges,
        "PostgreSQL jumbles the resolved type of each constant (int4, int8, numeric, and \
         the coercions it adds), so `price > 10` and `price > 10.5` differ; pgvigil sees \
         only that a literal is there, since applications that inline values are \
         inconsistent about quoting and decimals.",
    ),
    (
        "null-constant",
        Direction::PgvigilSplits,
        "PostgreSQL treats NULL as a constant ($n); pgvigil keeps NULL in the text and the \
         fingerprint, so `note = NULL` and `note = 'x'` are two shapes.",
    ),
];

fn difference(key: &str) -> Option<Direction> {
    DIFFERENCES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, d, _)| *d)
}

// ------------------------------------------------------------------ corpus

#[derive(Debug, Default)]
struct Group {
    name: String,
    line: usize,
    differs: Vec<String>,
    before: Vec<String>,
    after: Vec<String>,
    variants: Vec<String>,
}

fn parse_corpus(text: &str) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut pending: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if pending.is_none() {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(directive) = line.strip_prefix("-- @") {
                let (word, rest) = directive.split_once(' ').unwrap_or((directive, ""));
                let rest = rest.trim().to_owned();
                if word == "group" {
                    assert!(
                        groups.iter().all(|g| g.name != rest),
                        "line {lineno}: duplicate group {rest}"
                    );
                    groups.push(Group {
                        name: rest,
                        line: lineno,
                        ..Group::default()
                    });
                    continue;
                }
                let g = groups
                    .last_mut()
                    .unwrap_or_else(|| panic!("line {lineno}: directive before any group"));
                match word {
                    "differs" => g.differs.push(rest),
                    "before" => g.before.push(rest),
                    "after" => g.after.push(rest),
                    other => panic!("line {lineno}: unknown directive {other}"),
                }
                continue;
            }
            if line.starts_with("--") {
                continue;
            }
        }
        let (body, continues) = match line.strip_suffix(" \\") {
            Some(b) => (b, true),
            None => (line, false),
        };
        let v = pending.get_or_insert_with(String::new);
        v.push_str(body);
        if continues {
            v.push('\n');
        } else if let Some(v) = pending.take() {
            groups
                .last_mut()
                .unwrap_or_else(|| panic!("line {lineno}: statement before any group"))
                .variants
                .push(v);
        }
    }
    assert!(pending.is_none(), "corpus ends inside a continued line");
    groups
}

// ----------------------------------------------------------------- cluster

/// What the cluster needs on top of the integration harness's settings.
const PGSS_SETTINGS: &str = "\
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
pg_stat_statements.track_utility = on
pg_stat_statements.max = 10000
";

/// A PostgreSQL 15 cluster with pg_stat_statements loaded. Dropping it
/// stops the server and removes its directory, also when the test fails.
fn start_cluster() -> PgCluster {
    let initdb = pg_bindir().join("initdb");
    assert!(
        initdb.exists(),
        "{} not found: install PostgreSQL 15 (postgresql-15) or set PG_BINDIR",
        initdb.display()
    );
    PgCluster::with_settings(PGSS_SETTINGS)
        .unwrap_or_else(|e| panic!("starting the test cluster: {e:#}"))
}

async fn connect(cluster: &PgCluster) -> Client {
    cluster
        .connect_direct_db("postgres")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the test cluster: {e:#}\n{}",
                cluster.log_contents()
            )
        })
}

// -------------------------------------------------------------- the test

/// One statement of one variant as pgvigil and PostgreSQL saw it.
#[derive(Debug, Clone)]
struct Observation {
    group: usize,
    variant: usize,
    statement: usize,
    fingerprint: Fingerprint,
    query_id: i64,
    ours: String,
    theirs: String,
}

/// The normalized text with every `$n` and NULL as `?`, lowercased,
/// without whitespace: how a pg_stat_statements entry is matched to one of
/// our statements within a multi-statement variant.
fn skeleton(sql: &str) -> String {
    let joined: Vec<String> = normalize(sql.as_bytes())
        .into_iter()
        .map(|s| s.text.to_string())
        .collect();
    let text = joined.join(";").to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c == b'$' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
            i += 1;
            while b.get(i).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
            }
            continue;
        }
        if word_start
            && text[i..].starts_with("null")
            && !b
                .get(i + 4)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_')
        {
            out.push('?');
            i += 4;
            continue;
        }
        if !c.is_ascii_whitespace() {
            out.push(c as char);
        }
        i += 1;
    }
    out
}

async fn simple(client: &Client, sql: &str) -> Result<Vec<SimpleQueryMessage>, String> {
    client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
}

async fn entries(client: &Client, reset_id: i64) -> Result<Vec<(i64, String, i64)>, String> {
    let rows = simple(
        client,
        "SELECT queryid, query, calls FROM pg_stat_statements WHERE toplevel",
    )
    .await?;
    let mut out = Vec::new();
    for m in rows {
        if let SimpleQueryMessage::Row(r) = m {
            let id: i64 = r.get(0).and_then(|v| v.parse().ok()).ok_or("bad queryid")?;
            if id == reset_id {
                continue;
            }
            let query = r.get(1).unwrap_or_default().to_owned();
            let calls = r.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
            out.push((id, query, calls));
        }
    }
    Ok(out)
}

#[test]
fn fingerprints_agree_with_pg_stat_statements_query_ids() {
    let started = Instant::now();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let corpus = std::fs::read_to_string(dir.join("statements.sql")).expect("reading the corpus");
    let setup = std::fs::read_to_string(dir.join("setup.sql")).expect("reading setup.sql");
    let groups = parse_corpus(&corpus);
    assert!(
        groups.len() >= 200,
        "the corpus has only {} groups",
        groups.len()
    );
    for g in &groups {
        assert!(
            (2..=3).contains(&g.variants.len()),
            "group {} (line {}) has {} variants, wants 2 or 3",
            g.name,
            g.line,
            g.variants.len()
        );
        for d in &g.differs {
            assert!(
                difference(d).is_some(),
                "group {}: unknown difference {d}",
                g.name
            );
        }
    }

    let cluster = start_cluster();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    let (observations, failures) = runtime.block_on(run_corpus(&cluster, &groups, &setup));
    drop(cluster);
    assert!(
        failures.is_empty(),
        "{} statements of the corpus did not run as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let problems = analyse(&groups, &observations);
    let texts = text_differences(&groups, &observations);
    println!(
        "{} statements whose text differs from pg_stat_statements' beyond placeholders:",
        texts.len()
    );
    for t in &texts {
        println!("{t}");
    }
    let distinct_ids: BTreeSet<i64> = observations.iter().map(|o| o.query_id).collect();
    let distinct_fps: BTreeSet<Fingerprint> = observations.iter().map(|o| o.fingerprint).collect();
    println!(
        "{} groups, {} variants, {} statements; {} distinct query ids, {} distinct fingerprints; {:.1} s",
        groups.len(),
        groups.iter().map(|g| g.variants.len()).sum::<usize>(),
        observations.len(),
        distinct_ids.len(),
        distinct_fps.len(),
        started.elapsed().as_secs_f64()
    );
    for (key, _, reason) in DIFFERENCES {
        let n = groups
            .iter()
            .filter(|g| g.differs.iter().any(|d| d == key))
            .count();
        println!("documented difference {key} ({n} groups): {reason}");
    }
    assert!(
        distinct_ids.len() >= 200,
        "only {} distinct statements",
        distinct_ids.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

async fn run_corpus(
    cluster: &PgCluster,
    groups: &[Group],
    setup: &str,
) -> (Vec<Observation>, Vec<String>) {
    let client = connect(cluster).await;
    if let Err(e) = simple(&client, setup).await {
        panic!("setup.sql failed: {e}");
    }
    simple(&client, "SELECT pg_stat_statements_reset()")
        .await
        .expect("resetting pg_stat_statements");
    let reset_id = {
        let rows = entries(&client, 0)
            .await
            .expect("reading pg_stat_statements");
        assert_eq!(
            rows.len(),
            1,
            "after a reset only the reset is recorded: {rows:?}"
        );
        rows[0].0
    };

    let mut observations = Vec::new();
    let mut failures = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (vi, variant) in g.variants.iter().enumerate() {
            let at = format!("{} (line {}) variant {}", g.name, g.line, vi + 1);
            for sql in &g.before {
                if let Err(e) = simple(&client, sql).await {
                    failures.push(format!("{at}: @before {sql:?}: {e}"));
                }
            }
            let measured = async {
                simple(&client, "SELECT pg_stat_statements_reset()").await?;
                simple(&client, variant).await?;
                entries(&client, reset_id).await
            };
            let rows = match measured.await {
                Ok(rows) => rows,
                Err(e) => {
                    failures.push(format!("{at}: {e}\n    {variant}"));
                    // Leave no transaction open for the next group.
                    let _ = simple(&client, "ROLLBACK").await;
                    continue;
                }
            };
            for sql in &g.after {
                if let Err(e) = simple(&client, sql).await {
                    failures.push(format!("{at}: @after {sql:?}: {e}"));
                }
            }
            let ours = normalize(variant.as_bytes());
            if ours.is_empty() {
                failures.push(format!("{at}: pgvigil found no statement in {variant:?}"));
                continue;
            }
            // How many of our statements each entry stands for: it must be
            // its `calls`, or pgvigil split the text differently.
            let mut used = vec![0i64; rows.len()];
            for (si, st) in ours.iter().enumerate() {
                let row = if ours.len() == 1 && rows.len() == 1 {
                    Some(0)
                } else {
                    let sk = skeleton(&st.text);
                    rows.iter().position(|(_, q, _)| skeleton(q) == sk)
                };
                let Some(ri) = row else {
                    failures.push(format!(
                        "{at}: no pg_stat_statements entry for statement {} {:?}; entries: {:?}",
                        si + 1,
                        st.text,
                        rows.iter().map(|r| &r.1).collect::<Vec<_>>()
                    ));
                    continue;
                };
                used[ri] += 1;
                observations.push(Observation {
                    group: gi,
                    variant: vi,
                    statement: si,
                    fingerprint: st.fingerprint,
                    query_id: rows[ri].0,
                    ours: st.text.to_string(),
                    theirs: rows[ri].1.clone(),
                });
            }
            for (ri, &n) in used.iter().enumerate() {
                if n != rows[ri].2 {
                    failures.push(format!(
                        "{at}: pg_stat_statements ran {:?} {} times, pgvigil found it {n} times in {variant:?}",
                        rows[ri].1, rows[ri].2
                    ));
                }
            }
        }
    }
    (observations, failures)
}

fn declares(g: &Group, direction: Direction) -> bool {
    g.differs.iter().any(|d| difference(d) == Some(direction))
}

fn describe(groups: &[Group], o: &Observation) -> String {
    format!(
        "    {} v{} s{}: fingerprint {} query id {}\n      pgvigil:            {}\n      pg_stat_statements: {}",
        groups[o.group].name,
        o.variant + 1,
        o.statement + 1,
        o.fingerprint,
        o.query_id,
        o.ours,
        o.theirs.replace('\n', " ")
    )
}

/// Minimal union-find over arbitrary keys.
struct Components<K: Ord + Copy> {
    parent: BTreeMap<K, K>,
}

impl<K: Ord + Copy> Components<K> {
    fn new() -> Self {
        Components {
            parent: BTreeMap::new(),
        }
    }

    fn find(&mut self, k: K) -> K {
        let p = *self.parent.entry(k).or_insert(k);
        if p == k {
            return k;
        }
        let root = self.find(p);
        self.parent.insert(k, root);
        root
    }

    fn union(&mut self, a: K, b: K) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }
}

/// Everything that breaks "same fingerprint exactly when same query id",
/// except what declared differences explain.
///
/// A fingerprint may cover several query ids only when the variants of
/// groups that declare a merging difference link those ids together (and
/// the same, the other way round, for splitting differences): a statement
/// that merely shares its shape with such a group is explained through it.
fn analyse(groups: &[Group], obs: &[Observation]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids_of_fp: BTreeMap<Fingerprint, BTreeSet<i64>> = BTreeMap::new();
    let mut fps_of_id: BTreeMap<i64, BTreeSet<Fingerprint>> = BTreeMap::new();
    for o in obs {
        ids_of_fp
            .entry(o.fingerprint)
            .or_default()
            .insert(o.query_id);
        fps_of_id
            .entry(o.query_id)
            .or_default()
            .insert(o.fingerprint);
    }
    let same_statement =
        |a: &Observation, b: &Observation| a.group == b.group && a.statement == b.statement;
    let mut merged_ids = Components::new();
    let mut split_fps = Components::new();
    for a in obs {
        for b in obs.iter().filter(|b| same_statement(a, b)) {
            if declares(&groups[a.group], Direction::PgvigilMerges) {
                merged_ids.union(a.query_id, b.query_id);
            }
            if declares(&groups[a.group], Direction::PgvigilSplits) {
                split_fps.union(a.fingerprint, b.fingerprint);
            }
        }
    }

    for (fp, ids) in &ids_of_fp {
        let roots: BTreeSet<i64> = ids.iter().map(|&id| merged_ids.find(id)).collect();
        if roots.len() < 2 {
            continue;
        }
        let mut msg = format!(
            "pgvigil fingerprint {fp} covers {} PostgreSQL query ids:",
            ids.len()
        );
        for o in obs.iter().filter(|o| o.fingerprint == *fp) {
            let _ = write!(msg, "\n{}", describe(groups, o));
        }
        problems.push(msg);
    }
    for (id, fps) in &fps_of_id {
        let roots: BTreeSet<Fingerprint> = fps.iter().map(|&f| split_fps.find(f)).collect();
        if roots.len() < 2 {
            continue;
        }
        let mut msg = format!(
            "PostgreSQL query id {id} has {} pgvigil fingerprints:",
            fps.len()
        );
        for o in obs.iter().filter(|o| o.query_id == *id) {
            let _ = write!(msg, "\n{}", describe(groups, o));
        }
        problems.push(msg);
    }

    for (gi, g) in groups.iter().enumerate() {
        let statements: BTreeSet<usize> = obs
            .iter()
            .filter(|o| o.group == gi)
            .map(|o| o.statement)
            .collect();
        let per_statement = |s: usize| {
            let of: Vec<&Observation> = obs
                .iter()
                .filter(|o| o.group == gi && o.statement == s)
                .collect();
            let fps: BTreeSet<Fingerprint> = of.iter().map(|o| o.fingerprint).collect();
            let ids: BTreeSet<i64> = of.iter().map(|o| o.query_id).collect();
            (fps.len(), ids.len())
        };
        // Variants are the same statement with other constants: one
        // fingerprint, unless the group declares why not.
        if !declares(g, Direction::PgvigilSplits) {
            for &s in &statements {
                if per_statement(s).0 > 1 {
                    let mut msg = format!(
                        "group {} (line {}): the variants of statement {} have different fingerprints:",
                        g.name,
                        g.line,
                        s + 1
                    );
                    for o in obs.iter().filter(|o| o.group == gi && o.statement == s) {
                        let _ = write!(msg, "\n{}", describe(groups, o));
                    }
                    problems.push(msg);
                }
            }
        }
        // Every declared difference must show in its group.
        for d in &g.differs {
            let Some(direction) = difference(d) else {
                continue;
            };
            let shown = statements.iter().any(|&s| {
                let (fps, ids) = per_statement(s);
                match direction {
                    Direction::PgvigilMerges => fps == 1 && ids > 1,
                    Direction::PgvigilSplits => fps > 1 && ids == 1,
                }
            });
            if !shown {
                problems.push(format!(
                    "group {} (line {}) declares `{d}` but does not show it: remove the \
                     declaration or make the variants show it",
                    g.name, g.line
                ));
            }
        }
    }
    problems
}

/// Statements whose normalized text differs from pg_stat_statements' text
/// beyond placeholders (informational: texts are for people, only the
/// grouping is asserted).
fn text_differences(groups: &[Group], obs: &[Observation]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    obs.iter()
        .filter(|o| skeleton(&o.ours) != skeleton(&o.theirs))
        .filter(|o| seen.insert((o.group, o.statement)))
        .map(|o| describe(groups, o))
        .collect()
}

#[test]
fn skeleton_ignores_placeholders_nulls_case_and_spacing() {
    assert_eq!(
        skeleton("SELECT a FROM t WHERE b = $1 AND c IS NULL"),
        skeleton("select a from t where b=5 and c is $7")
    );
}

#[test]
fn corpus_parser_reads_directives_and_continued_lines() {
    let g = parse_corpus(
        "-- a comment\n-- @group one\n-- @differs list-length\n-- @before BEGIN\nSELECT 1\nSELECT 'a' \\\n  'b'\n\n-- @group two\n-- @after ROLLBACK\nSELECT 2\n",
    );
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].differs, ["list-length"]);
    assert_eq!(g[0].before, ["BEGIN"]);
    assert_eq!(g[0].variants, ["SELECT 1", "SELECT 'a'\n  'b'"]);
    assert_eq!(g[1].after, ["ROLLBACK"]);
}
