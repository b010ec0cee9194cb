//! Authentication: clients to pgvigil (trust, md5, SCRAM), pgvigil to
//! PostgreSQL (SCRAM and trust; md5 and cleartext refused without TLS by
//! server_require_auth), rejections with the right SQLSTATE, and no
//! passwords in the logs.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use md5::{Digest, Md5};
use pgvigil_integration::raw::first_reply_to_startup;
use pgvigil_integration::vigil::connect_config;
use pgvigil_integration::{
    shared_cluster, sqlstate, timed, unique_name, PgCluster, Pgvigil, PoolMode,
};
use tokio_postgres::Client;

const LIMIT: Duration = Duration::from_secs(60);

/// Connects expecting failure; returns the SQLSTATE.
async fn rejected(vigil: &Pgvigil, user: &str, password: &str, db: &str) -> Result<String> {
    match connect_config(&vigil.config(user, password, db)).await {
        Ok(_) => bail!("connecting as {user}@{db} succeeded but should have been rejected"),
        Err(e) => sqlstate(&e)
            .map(str::to_string)
            .with_context(|| format!("rejection of {user}@{db} carried no SQLSTATE: {e:?}")),
    }
}

async fn select_one(client: &Client, what: &str) -> Result<()> {
    let v: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .with_context(|| format!("{what}: SELECT 1"))?
        .get(0);
    ensure!(v == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_rejected_with_28p01_while_others_keep_working() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let good = vigil.connect_app().await?;
        select_one(&good, "before").await?;
        for _ in 0..3 {
            let code = rejected(&vigil, "app", "not-the-password", "appdb").await?;
            ensure!(
                code == "28P01",
                "wrong password gave {code}, expected 28P01"
            );
            select_one(&good, "connected client after a failed login").await?;
        }
        let again = vigil.connect_app().await?;
        select_one(&again, "new client after failed logins").await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_rejected_with_3d000() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let code = rejected(&vigil, "app", "secret", "no_such_database").await?;
        ensure!(
            code == "3D000",
            "unknown database gave {code}, expected 3D000"
        );
        select_one(&vigil.connect_app().await?, "after").await
    })
    .await
}

/// As PostgreSQL: an unknown user is asked for a password like anyone
/// else (a SCRAM exchange with a made-up salt) and fails like a wrong
/// password, so names cannot be tried one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_fails_like_a_wrong_password() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let unknown = rejected(&vigil, "no_such_user", "whatever", "appdb").await?;
        let wrong = rejected(&vigil, "app", "not-the-password", "appdb").await?;
        ensure!(
            unknown == "28P01" && wrong == "28P01",
            "unknown user gave {unknown}, wrong password {wrong}: both should be 28P01"
        );
        // Both are offered the same SASL mechanisms before any password.
        let salt_of = |user: &'static str| {
            let port = vigil.port();
            async move {
                let first =
                    pgvigil_integration::raw::first_reply_to_startup(port, user, "appdb").await?;
                ensure!(
                    first.auth_code() == Some(10),
                    "{user}: expected AuthenticationSASL, got {first:?}"
                );
                Ok::<_, anyhow::Error>(first.sasl_mechanisms())
            }
        };
        ensure!(salt_of("no_such_user").await? == salt_of("app").await?);
        select_one(&vigil.connect_app().await?, "after").await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_exceeded_rejected_with_53300() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .max_client_conn(3)
            .spawn()
            .await?;
        let mut held = Vec::new();
        for i in 0..3 {
            let client = vigil
                .connect_app()
                .await
                .with_context(|| format!("client {} of max_client_conn 3", i + 1))?;
            select_one(&client, "held client").await?;
            held.push(client);
        }
        let code = rejected(&vigil, "app", "secret", "appdb").await?;
        ensure!(
            code == "53300",
            "client over max_client_conn got {code}, expected 53300"
        );
        for client in &held {
            select_one(client, "held client after the rejection").await?;
        }
        // A freed slot can be used again.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match connect_config(&vigil.app_config()).await {
                Ok(client) => return select_one(&client, "client in the freed slot").await,
                Err(e) if Instant::now() >= deadline => {
                    bail!("slot not freed 5 s after a client disconnected: {e:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_logs() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let user = unique_name("logcheck");
        let password = format!("Pw-{}-Zq9", unique_name("sentinel"));
        let wrong = format!("Wrong-{}-Xk7", unique_name("sentinel"));
        direct
            .batch_execute(&format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"))
            .await
            .context("create role")?;
        let md5_hash = format!("{:x}", Md5::digest(format!("{password}{user}")));
        let upstream = format!(
            "postgres://{user}:{password}@127.0.0.1:{}/appdb",
            cluster.port()
        );

        for client_auth in ["scram-sha-256", "md5"] {
            let vigil = Pgvigil::builder(cluster)
                .upstream(upstream.clone())
                .pool_mode(PoolMode::Transaction)
                .pool_size(2)
                .client_auth(client_auth)
                .env("RUST_LOG", "debug")
                .spawn()
                .await?;
            let client = vigil.connect(&user, &password, "appdb").await?;
            select_one(&client, "logged-in client").await?;
            client
                .batch_execute("BEGIN; SELECT 2; COMMIT")
                .await
                .context("transaction")?;
            let code = rejected(&vigil, &user, &wrong, "appdb").await?;
            ensure!(code == "28P01", "wrong password gave {code}");
            let _ = rejected(&vigil, "no_such_user", &wrong, "appdb").await?;
            let _ = rejected(&vigil, &user, &password, "no_such_db").await?;
            drop(client);
            tokio::time::sleep(Duration::from_millis(200)).await;

            let log = vigil.stderr();
            ensure!(
                log.contains("listening on"),
                "pgvigil's stderr lacks the `listening on` line; is logging captured?\n{log}"
            );
            for (what, secret) in [
                ("the password", password.as_str()),
                ("the wrong password", wrong.as_str()),
                ("the md5 password hash", md5_hash.as_str()),
            ] {
                if let Some(line) = log.lines().find(|l| l.contains(secret)) {
                    bail!(
                        "client_auth {client_auth}: {what} appears in pgvigil's debug log: {line}"
                    );
                }
            }
        }
        direct
            .batch_execute(&format!("DROP ROLE {user}"))
            .await
            .context("drop role")?;
        Ok(())
    })
    .await
}

/// A config declaring appdb and the four roles of the cluster.
fn config_with_all_users(cluster: &PgCluster, client_auth: &str) -> String {
    format!(
        r#"[pgvigil]
client_auth = "{client_auth}"

[pool]
pool_mode = "transaction"
pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "secret"

[users.md5user]
password = "md5pass"

[users.plainuser]
password = "plainpass"

[users.trustuser]
password = "trustpass"
"#,
        port = cluster.port()
    )
}

/// Logs in to pgvigil as `user` and checks that queries run on PostgreSQL as
/// that role, from two clients at once (so pgvigil opens several server connections).
async fn upstream_login(user: &str, password: &str, client_auth: &str) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .config_file(config_with_all_users(cluster, client_auth))
            .spawn()
            .await?;
        let a = vigil.connect(user, password, "appdb").await?;
        let b = vigil.connect(user, password, "appdb").await?;
        let (ra, rb) = tokio::try_join!(
            a.query_one("SELECT current_user::text, pg_sleep(0.2)::text", &[]),
            b.query_one("SELECT current_user::text, pg_sleep(0.2)::text", &[])
        )
        .with_context(|| format!("queries as {user}"))?;
        for r in [ra, rb] {
            let current: String = r.get(0);
            ensure!(
                current == user,
                "ran as {current:?} on PostgreSQL, expected {user:?}"
            );
        }
        if client_auth != "trust" {
            let code = rejected(&vigil, user, "bad-password", "appdb").await?;
            ensure!(
                code == "28P01",
                "wrong password gave {code}, expected 28P01"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_scram_login_as_app() -> Result<()> {
    upstream_login("app", "secret", "md5").await
}

/// Logs in to pgvigil as `user`, whose pg_hba.conf line asks for `method`
/// over plain TCP, and checks that pgvigil refused to answer it: the client
/// hears why, the log says which setting to change, and neither shows the
/// password.
async fn upstream_method_refused(user: &str, password: &str, method: &str) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .config_file(config_with_all_users(cluster, "scram-sha-256"))
            .env("RUST_LOG", "debug")
            .spawn()
            .await?;
        let err = match connect_config(&vigil.config(user, password, "appdb")).await {
            Ok(_) => bail!("{user} logged in, but pgvigil should not answer {method} over TCP"),
            Err(e) => e,
        };
        let message = err
            .as_db_error()
            .map(|db| db.message().to_string())
            .with_context(|| format!("the refusal carried no error message: {err:?}"))?;
        ensure!(
            message.contains("server_require_auth") && message.contains(method),
            "the client should learn that server_require_auth refused {method}: {message:?}"
        );
        // The refusal is the pool's, not the cluster's: other users go on.
        select_one(&vigil.connect("app", "secret", "appdb").await?, "app after").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = vigil.stderr();
        let warning = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("server_require_auth"))
            .with_context(|| format!("no warning names server_require_auth:\n{log}"))?;
        let address = format!("127.0.0.1:{}", cluster.port());
        ensure!(
            warning.contains(method) && warning.contains(&address),
            "the warning should name the method {method} and the server {address}: {warning}"
        );
        if let Some(line) = log.lines().find(|l| l.contains(password)) {
            bail!("the password appears in pgvigil's log: {line}");
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_md5_request_over_plain_tcp_is_refused_by_default() -> Result<()> {
    upstream_method_refused("md5user", "md5pass", "md5").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cleartext_request_over_plain_tcp_is_refused_by_default() -> Result<()> {
    upstream_method_refused("plainuser", "plainpass", "password").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_trust_login_as_trustuser() -> Result<()> {
    upstream_login("trustuser", "trustpass", "trust").await
}

/// Starts pgvigil with `--client-auth method` and returns it with the first
/// message it answers a StartupMessage for app@appdb with.
async fn with_client_auth(method: &str) -> Result<(Pgvigil, pgvigil_integration::raw::Message)> {
    let vigil = Pgvigil::builder(shared_cluster())
        .pool_mode(PoolMode::Session)
        .pool_size(2)
        .client_auth(method)
        .spawn()
        .await?;
    let first = first_reply_to_startup(vigil.port(), "app", "appdb").await?;
    Ok((vigil, first))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_trust_needs_no_password() -> Result<()> {
    timed(LIMIT, async {
        let (vigil, first) = with_client_auth("trust").await?;
        ensure!(
            first.auth_code() == Some(0),
            "expected AuthenticationOk right away, got tag {:?} code {:?}",
            first.tag as char,
            first.auth_code()
        );
        select_one(&vigil.connect("app", "", "appdb").await?, "no password").await?;
        select_one(
            &vigil.connect("app", "ignored", "appdb").await?,
            "any password",
        )
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_md5_asks_for_md5_and_checks_it() -> Result<()> {
    timed(LIMIT, async {
        let (vigil, first) = with_client_auth("md5").await?;
        ensure!(
            first.auth_code() == Some(5),
            "expected AuthenticationMD5Password (5), got tag {:?} code {:?}",
            first.tag as char,
            first.auth_code()
        );
        select_one(&vigil.connect_app().await?, "right password").await?;
        let code = rejected(&vigil, "app", "wrong", "appdb").await?;
        ensure!(
            code == "28P01",
            "wrong password gave {code}, expected 28P01"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_scram_asks_for_scram_and_checks_it() -> Result<()> {
    timed(LIMIT, async {
        let (vigil, first) = with_client_auth("scram-sha-256").await?;
        ensure!(
            first.auth_code() == Some(10)
                && first.sasl_mechanisms().iter().any(|m| m == "SCRAM-SHA-256"),
            "expected AuthenticationSASL offering SCRAM-SHA-256, got tag {:?} code {:?} {:?}",
            first.tag as char,
            first.auth_code(),
            first.sasl_mechanisms()
        );
        select_one(&vigil.connect_app().await?, "right password").await?;
        let code = rejected(&vigil, "app", "wrong", "appdb").await?;
        ensure!(
            code == "28P01",
            "wrong password gave {code}, expected 28P01"
        );
        Ok(())
    })
    .await
}

/// A user configured with pg_authid's SCRAM secret instead of its password:
/// clients log in with the password, and pgvigil logs in to PostgreSQL with
/// the keys their proofs reveal (as PgBouncer does), never knowing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_secret_in_the_config_logs_in_to_postgresql_without_the_password() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let secret = cluster
            .psql_admin(
                "postgres",
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            )?
            .trim()
            .to_string();
        ensure!(
            secret.starts_with("SCRAM-SHA-256$"),
            "app's secret: {secret:?}"
        );
        let config = config_with_all_users(cluster, "scram-sha-256")
            .replace("password = \"secret\"", &format!("password = \"{secret}\""));
        let vigil = Pgvigil::builder(cluster)
            .config_file(config)
            .env("RUST_LOG", "debug")
            .spawn()
            .await?;
        let client = vigil.connect("app", "secret", "appdb").await?;
        let user: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .context("query as app")?
            .get(0);
        ensure!(user == "app", "ran as {user:?}");
        let code = rejected(&vigil, "app", "not-the-password", "appdb").await?;
        ensure!(code == "28P01", "wrong password gave {code}");
        let keys = secret.rsplit('$').next().unwrap_or_default();
        if let Some(line) = vigil.stderr().lines().find(|l| l.contains(keys)) {
            bail!("the SCRAM secret appears in pgvigil's log: {line}");
        }
        Ok(())
    })
    .await
}

/// A configured md5 hash or SCRAM secret is not a password: a client that
/// sends the hash text itself is turned away, whatever the method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_hash_does_not_work_as_a_password() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let stored = |role: &str| -> Result<String> {
            Ok(cluster
                .psql_admin(
                    "postgres",
                    &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
                )?
                .trim()
                .to_string())
        };
        let scram = stored("app")?;
        let md5 = stored("md5user")?;
        ensure!(scram.starts_with("SCRAM-SHA-256$") && md5.starts_with("md5"));
        for client_auth in ["md5", "scram-sha-256"] {
            let config = config_with_all_users(cluster, client_auth)
                .replace("password = \"secret\"", &format!("password = \"{scram}\""))
                .replace("password = \"md5pass\"", &format!("password = \"{md5}\""));
            let vigil = Pgvigil::builder(cluster).config_file(config).spawn().await?;
            for (user, hash) in [("app", &scram), ("md5user", &md5)] {
                let code = rejected(&vigil, user, hash, "appdb").await?;
                ensure!(
                    code == "28P01",
                    "client_auth {client_auth}: {user} sending its stored hash gave {code}, expected 28P01"
                );
            }
        }
        Ok(())
    })
    .await
}
