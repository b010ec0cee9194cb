//! The command-line contract (docs/cli-contract.md): exit codes, one-line
//! errors naming the bad key, graceful shutdown.

use std::time::Duration;

use anyhow::{ensure, Result};
use pgvigil_integration::util::free_ports;
use pgvigil_integration::vigil::{run_cli, CliRun};
use pgvigil_integration::{shared_cluster, timed, Pgvigil, PoolMode};

const CLI_LIMIT: Duration = Duration::from_secs(5);

/// Flags that keep a run that wrongly starts off the default ports.
fn listen_flags() -> Result<Vec<String>> {
    let ports = free_ports(2)?;
    Ok(vec![
        "--listen".into(),
        format!("127.0.0.1:{}", ports[0]),
        "--admin-listen".into(),
        format!("127.0.0.1:{}", ports[1]),
    ])
}

fn run(extra: &[&str], config: Option<&str>) -> Result<CliRun> {
    let flags = listen_flags()?;
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    run_cli(&args, config, CLI_LIMIT)
}

fn expect_exit_2(run: &CliRun, what: &str) -> Result<()> {
    ensure!(
        run.status.is_some(),
        "{what}: pgvigil was still running after {CLI_LIMIT:?}; stderr:\n{}",
        run.stderr
    );
    let code = run.status.and_then(|s| s.code());
    ensure!(
        code == Some(2),
        "{what}: exit {:?}, expected 2; stderr:\n{}",
        run.status,
        run.stderr
    );
    Ok(())
}

/// Exit code 2 and exactly one non-empty stderr line, which names `key`.
fn expect_one_line_naming(run: &CliRun, key: &str, what: &str) -> Result<()> {
    expect_exit_2(run, what)?;
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    ensure!(
        lines.len() == 1,
        "{what}: expected one stderr line, got {}:\n{}",
        lines.len(),
        run.stderr
    );
    ensure!(
        lines[0].contains(key),
        "{what}: the stderr line does not name `{key}`: {}",
        lines[0]
    );
    Ok(())
}

/// A valid config; tests break one key at a time with `str::replace`.
const VALID_CONFIG: &str = r#"[pgvigil]
client_auth = "scram-sha-256"
max_client_conn = 100

[pool]
pool_mode = "transaction"
pool_size = 5

[databases.appdb]
host = "127.0.0.1"
port = 5432

[users.app]
password = "secret"
"#;

fn broken_config(from: &str, to: &str) -> String {
    assert!(
        VALID_CONFIG.contains(from),
        "{from:?} not in the valid config"
    );
    VALID_CONFIG.replace(from, to)
}

#[test]
fn unknown_flag_exits_2() -> Result<()> {
    let run = run(&["--no-such-flag"], None)?;
    expect_exit_2(&run, "--no-such-flag")?;
    ensure!(
        run.stderr.contains("no-such-flag"),
        "stderr does not name the flag:\n{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn invalid_flag_value_exits_2() -> Result<()> {
    let bad_mode = run(&["--pool-mode", "sometimes"], Some(VALID_CONFIG))?;
    expect_exit_2(&bad_mode, "--pool-mode sometimes")?;
    let bad_size = run(&["--pool-size", "many"], Some(VALID_CONFIG))?;
    expect_exit_2(&bad_size, "--pool-size many")
}

#[test]
fn unknown_config_key_exits_2_with_one_line_naming_it() -> Result<()> {
    let config = broken_config("[pool]\n", "[pool]\nbogus_setting = 1\n");
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "bogus_setting",
        "unknown key in [pool]",
    )?;
    let config = broken_config("host = ", "hots = ");
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "hots",
        "unknown key in [databases.appdb]",
    )
}

#[test]
fn config_value_of_wrong_type_exits_2_with_one_line_naming_it() -> Result<()> {
    let config = broken_config("pool_size = 5", "pool_size = \"ten\"");
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "pool_size",
        "pool_size = \"ten\"",
    )?;
    let config = broken_config("max_client_conn = 100", "max_client_conn = \"lots\"");
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "max_client_conn",
        "max_client_conn = \"lots\"",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_listening_line_and_exits_0_on_sigterm() -> Result<()> {
    timed(Duration::from_secs(60), async {
        let mut vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let client = vigil.connect_app().await?;
        client.simple_query("SELECT 1").await?;
        let listening = format!("listening on 127.0.0.1:{}", vigil.port());
        ensure!(
            vigil.stderr().contains(&listening),
            "stderr lacks `{listening}`:\n{}",
            vigil.stderr()
        );
        // The same line says where the dashboard is, as a URL to open.
        let dashboard = format!("dashboard http://127.0.0.1:{}/", vigil.admin_port());
        ensure!(
            vigil
                .stderr()
                .lines()
                .any(|l| l.contains(&listening) && l.contains(&dashboard)),
            "the `listening on` line does not name `{dashboard}`:\n{}",
            vigil.stderr()
        );
        drop(client);
        let status = vigil.terminate(Duration::from_secs(10))?;
        ensure!(
            status.code() == Some(0),
            "exit {status} after SIGTERM, expected 0; stderr:\n{}",
            vigil.stderr()
        );
        Ok(())
    })
    .await
}

/// The production-trust settings reject bad values the same way: exit 2,
/// one line naming the key, and never the secret involved.
#[test]
fn tls_timeout_and_credential_settings_exit_2_naming_the_key() -> Result<()> {
    let flag_cases: [(&[&str], &str); 5] = [
        (&["--client-tls-sslmode", "require"], "client_tls_cert_file"),
        (&["--client-tls-sslmode", "sometimes"], "client_tls_sslmode"),
        (
            &["--server-tls-sslmode", "verify-full"],
            "server_tls_ca_file",
        ),
        (
            &["--server-require-auth", "md5,!none"],
            "server_require_auth",
        ),
        (&["--query-timeout=-1"], "pool.query_timeout"),
    ];
    for (flags, key) in flag_cases {
        let what = flags.join(" ");
        expect_one_line_naming(&run(flags, Some(VALID_CONFIG))?, key, &what)?;
    }

    let config = broken_config(
        "pool_size = 5",
        "pool_size = 5\nacquire_timeout = 5\nquery_wait_timeout = 6",
    );
    let both = run(&[], Some(&config))?;
    expect_one_line_naming(&both, "pool.query_wait_timeout", "two wait timeouts")?;
    expect_one_line_naming(&both, "pool.acquire_timeout", "two wait timeouts")?;

    let config = broken_config(
        "password = \"secret\"",
        "password = \"secret\"\npassword_file = \"/nonexistent/pw\"",
    );
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "users.app.password_file",
        "password and password_file",
    )?;

    let config = broken_config(
        "password = \"secret\"",
        "password_env = \"PGVIGIL_CLI_TEST_UNSET\"",
    );
    expect_one_line_naming(
        &run(&[], Some(&config))?,
        "users.app.password_env",
        "unset password_env",
    )?;

    let upstream = run(
        &[
            "--upstream",
            "postgres://app:url-pw-77@127.0.0.1/appdb?sslmode=verify-ca",
        ],
        None,
    )?;
    expect_one_line_naming(&upstream, "sslrootcert", "--upstream sslmode=verify-ca")?;
    ensure!(
        !upstream.stderr.contains("url-pw-77"),
        "the error shows the URL's password: {}",
        upstream.stderr
    );
    Ok(())
}
