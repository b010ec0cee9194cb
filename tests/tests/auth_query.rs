//! auth_user / auth_query: a role that exists only in PostgreSQL logs in
//! through pgvigil with its own password (looked up with auth_query, then
//! checked with SCRAM and reused, as keys, for pgvigil's own login), in
//! both pool modes; a wrong password and an unknown role both fail with
//! 28P01 after a SCRAM exchange; the auth_user's password stays out of
//! pgvigil's log and SHOW CONFIG; a second login within the cache window
//! does not query PostgreSQL again; a lookup that cannot be done is an
//! 08006 for the client.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test auth_query`

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::cluster::APP_DB;
use pgvigil_integration::tokio_postgres::SimpleQueryMessage;
use pgvigil_integration::vigil::connect_config;
use pgvigil_integration::{
    both_modes, shared_cluster, sqlstate, timed, unique_name, PgCluster, Pgvigil, PoolMode,
};

const LIMIT: Duration = Duration::from_secs(90);

/// Creates a LOGIN role with a SCRAM password, directly in PostgreSQL.
fn create_scram_role(cluster: &PgCluster, role: &str, password: &str) -> Result<()> {
    cluster.psql_admin(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE {role} LOGIN PASSWORD '{password}';"
        ),
    )?;
    // Tests share the cluster: two GRANTs on the same schema at once make
    // PostgreSQL say "tuple concurrently updated". One at a time.
    static SCHEMA_ACL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SCHEMA_ACL.lock().unwrap_or_else(|p| p.into_inner());
    cluster.psql_admin(APP_DB, &format!("GRANT ALL ON SCHEMA public TO {role}"))?;
    Ok(())
}

/// Connects expecting failure; returns the SQLSTATE.
async fn rejected(vigil: &Pgvigil, user: &str, password: &str) -> Result<String> {
    match connect_config(&vigil.config(user, password, APP_DB)).await {
        Ok(_) => bail!("logging in as {user} succeeded but should have been refused"),
        Err(e) => sqlstate(&e)
            .map(str::to_string)
            .with_context(|| format!("refusal of {user} carried no SQLSTATE: {e:?}")),
    }
}

/// A pgvigil config: appdb, the auth_user with a plain password, and an
/// admin who may open the console (trust is refused there from nowhere
/// but loopback, so the admin logs in with its password).
fn config(cluster: &PgCluster, mode: PoolMode, auth_user: &str, auth_password: &str) -> String {
    format!(
        r#"[pgvigil]
client_auth = "scram-sha-256"
auth_user = "{auth_user}"
admin_users = ["{auth_user}"]

[pool]
pool_mode = "{mode}"
pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.{auth_user}]
password = "{auth_password}"
"#,
        mode = mode.as_str(),
        port = cluster.port()
    )
}

/// A role absent from the config logs in with its PostgreSQL password,
/// runs queries as itself (current_user is the role: pgvigil logged in to
/// PostgreSQL as it, with the keys from the client's SCRAM proof), keeps
/// a temp table across statements in session mode, and a second client of
/// the same role shares the pool.
async fn dynamic_role_logs_in_and_runs_queries(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let role = unique_name("dyn");
        let password = unique_name("dyn-pw");
        create_scram_role(cluster, &role, &password)?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(mode)
            .pool_size(2)
            .arg("--auth-user")
            .arg("app")
            .spawn()
            .await?;
        let client = vigil
            .connect(&role, &password, APP_DB)
            .await
            .with_context(|| format!("logging in as {role}, known only to PostgreSQL"))?;
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        ensure!(who == role, "queries ran as {who}, expected {role}");
        let n: i64 = client
            .query_one("SELECT $1::bigint + 1", &[&41i64])
            .await?
            .get(0);
        ensure!(n == 42, "extended-protocol query gave {n}");
        let table = unique_name("dyn_t");
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (v int); INSERT INTO {table} VALUES (1), (2); \
                 DROP TABLE {table};"
            ))
            .await
            .context("a write batch as the looked-up role")?;
        let second = vigil
            .connect(&role, &password, APP_DB)
            .await
            .context("a second login of the same role")?;
        let (a, b) = tokio::join!(
            client.query_one("SELECT pg_sleep(0.1)::text, current_user::text", &[]),
            second.query_one("SELECT pg_sleep(0.1)::text, current_user::text", &[]),
        );
        ensure!(a?.get::<_, String>(1) == role && b?.get::<_, String>(1) == role);
        // A configured user is untouched by auth_query.
        let app = vigil.connect_app().await?;
        let v: i32 = app.query_one("SELECT 1", &[]).await?.get(0);
        ensure!(v == 1);
        vigil.assert_no_panic()
    })
    .await
}

both_modes!(dynamic_role, dynamic_role_logs_in_and_runs_queries);

/// A wrong password for a looked-up role and a role PostgreSQL does not
/// have both get 28P01, and both are asked for SCRAM first, so trying
/// names does not tell which roles exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_role_both_fail_with_28p01_after_scram() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let role = unique_name("dyn");
        let password = unique_name("dyn-pw");
        create_scram_role(cluster, &role, &password)?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .arg("--auth-user")
            .arg("app")
            .spawn()
            .await?;
        let wrong = rejected(&vigil, &role, "not-the-password").await?;
        let ghost = unique_name("no_such_role");
        let unknown = rejected(&vigil, &ghost, "whatever").await?;
        ensure!(
            wrong == "28P01" && unknown == "28P01",
            "wrong password gave {wrong}, unknown role {unknown}: both should be 28P01"
        );
        for user in [role.as_str(), ghost.as_str()] {
            let first =
                pgvigil_integration::raw::first_reply_to_startup(vigil.port(), user, APP_DB)
                    .await?;
            ensure!(
                first.auth_code() == Some(10) && first.sasl_mechanisms() == ["SCRAM-SHA-256"],
                "{user}: expected AuthenticationSASL offering SCRAM-SHA-256, got {first:?}"
            );
        }
        // The right password still works after the failures.
        let client = vigil.connect(&role, &password, APP_DB).await?;
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        ensure!(who == role);
        vigil.assert_no_panic()
    })
    .await
}

/// How many times PostgreSQL ran auth_query for `role` (log_statement =
/// 'all' logs each execution with its bound parameter).
fn lookups_logged(cluster: &PgCluster, role: &str) -> usize {
    let log = cluster.log_contents();
    let lines: Vec<&str> = log.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].contains("execute") && w[0].contains("pg_shadow") && w[1].contains(role))
        .count()
}

/// In a private cluster that logs every statement: two logins of the same
/// role within the cache window run auth_query once; the auth_user's
/// password (and the looked-up SCRAM secret) appear neither in pgvigil's
/// log, at trace level, nor in SHOW CONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_is_cached_and_no_secret_reaches_log_or_show_config() -> Result<()> {
    timed(LIMIT, async {
        let cluster = PgCluster::with_settings("log_statement = 'all'")?;
        let auth_user = "vigil_auth";
        let auth_password = unique_name("auth-user-pw-Zq7");
        cluster.psql_admin(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {auth_user} SUPERUSER LOGIN PASSWORD '{auth_password}';"
            ),
        )?;
        let role = unique_name("dyn");
        let password = unique_name("dyn-pw");
        create_scram_role(&cluster, &role, &password)?;
        let secret = cluster
            .psql_admin(
                "postgres",
                &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
            )?
            .trim()
            .to_string();
        ensure!(secret.starts_with("SCRAM-SHA-256$"), "secret {secret:?}");
        let vigil = Pgvigil::builder(&cluster)
            .config_file(config(
                &cluster,
                PoolMode::Transaction,
                auth_user,
                &auth_password,
            ))
            .env("RUST_LOG", "trace")
            .spawn()
            .await?;
        for i in 0..2 {
            let client = vigil
                .connect(&role, &password, APP_DB)
                .await
                .with_context(|| format!("login {} of {role}", i + 1))?;
            let who: String = client
                .query_one("SELECT current_user::text", &[])
                .await?
                .get(0);
            ensure!(who == role);
        }
        let ran = lookups_logged(&cluster, &role);
        ensure!(
            ran == 1,
            "auth_query ran {ran} times for two logins within the cache window, expected 1"
        );

        let admin = vigil.connect(auth_user, &auth_password, "pgvigil").await?;
        let mut config_text = String::new();
        for m in admin.simple_query("SHOW CONFIG").await? {
            if let SimpleQueryMessage::Row(row) = m {
                for i in 0..row.len() {
                    config_text.push_str(row.get(i).unwrap_or(""));
                    config_text.push('\n');
                }
            }
        }
        ensure!(
            config_text.contains(auth_user),
            "SHOW CONFIG does not name auth_user: {config_text}"
        );
        ensure!(
            !config_text.contains(&auth_password),
            "SHOW CONFIG shows the auth_user's password"
        );
        let log = vigil.stderr();
        ensure!(
            !log.contains(&auth_password),
            "pgvigil's log holds the auth_user's password"
        );
        let stored_key = secret.rsplit('$').next().unwrap_or(&secret);
        ensure!(
            !log.contains(stored_key.split(':').next().unwrap_or(stored_key)),
            "pgvigil's log holds the looked-up SCRAM secret"
        );
        ensure!(
            !log.contains(&password),
            "pgvigil's log holds the role's password"
        );
        vigil.assert_no_panic()
    })
    .await
}

/// An auth_user that cannot log in makes the lookup impossible: the client
/// is told so with 08006 (not a password failure it could not fix), the
/// log says why without the password, and configured users are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_that_cannot_log_in_fails_with_08006_and_a_log_line() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let role = unique_name("dyn");
        let password = unique_name("dyn-pw");
        create_scram_role(cluster, &role, &password)?;
        let wrong = unique_name("not-apps-password");
        let toml = format!(
            r#"[pgvigil]
client_auth = "scram-sha-256"
auth_user = "app"

[pool]
pool_mode = "transaction"
pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "{wrong}"
"#,
            port = cluster.port()
        );
        let vigil = Pgvigil::builder(cluster).config_file(toml).spawn().await?;
        let code = rejected(&vigil, &role, &password).await?;
        ensure!(code == "08006", "failed lookup gave {code}, expected 08006");
        let log = vigil.stderr();
        ensure!(
            log.contains("auth_query lookup failed"),
            "no log line for the failed lookup: {log}"
        );
        ensure!(!log.contains(&wrong), "the log holds auth_user's password");
        vigil.assert_no_panic()
    })
    .await
}
