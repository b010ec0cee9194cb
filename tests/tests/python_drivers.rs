//! Python drivers through pgvigil in transaction mode with prepared
//! statements: asyncpg (named statements, its own statement cache) and
//! psycopg 3 (prepare_threshold=0, the default threshold, prepare=True,
//! pipeline mode), 20 clients at a time on a pool of 2 server connections.
//!
//! The scenarios live in `tests/python/drivers_test.py`; this test starts
//! pgvigil and runs the script against it. It needs `python3` with the
//! pinned drivers: `python3 -m pip install -r tests/python/requirements.txt`.

use std::time::Duration;

use anyhow::{bail, Result};
use pgvigil_integration::python::{python3, python_script, require_python_modules, run_python};
use pgvigil_integration::{shared_cluster, Pgvigil, PoolMode};

const POOL_SIZE: u32 = 2;
/// The script keeps itself under 90 s even when pgvigil hangs.
const LIMIT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_in_transaction_mode() -> Result<()> {
    require_python_modules(
        "asyncpg, psycopg",
        "the Python drivers asyncpg and psycopg are not installed",
    )
    .await?;
    let vigil = Pgvigil::builder(shared_cluster())
        .pool_mode(PoolMode::Transaction)
        .pool_size(POOL_SIZE)
        .max_client_conn(200)
        .spawn()
        .await?;
    let script = python_script("drivers_test.py");
    let dsn = vigil.app_url();
    let mut cmd = python3();
    cmd.arg(&script)
        .env("PGVIGIL_DSN", &dsn)
        .env("PGVIGIL_POOL_SIZE", POOL_SIZE.to_string());
    let out = run_python(cmd, &format!("python3 {}", script.display()), LIMIT).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("{stdout}{stderr}");
    } else {
        bail!(
            "tests/python/drivers_test.py failed ({}) against pgvigil on port {} \
             (transaction mode, pool size {POOL_SIZE}):\n{stdout}\nstderr:\n{stderr}",
            out.status,
            vigil.port()
        );
    }
    Ok(())
}
