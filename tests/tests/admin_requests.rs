//! The admin listener answers only requests that name it and, for those
//! that change something, only what no cross-site form can send: a page
//! a browser visits can neither read the API through DNS rebinding nor
//! reset statistics with a form POST, token or not.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test admin_requests`

use std::time::Duration;

use anyhow::{ensure, Result};
use pgvigil_integration::{shared_cluster, timed, Pgvigil};

const LIMIT: Duration = Duration::from_secs(30);

/// Every endpoint, the dashboard page included.
const PATHS: &[&str] = &[
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/queries",
    "/api/pools",
];

/// A foreign `Host` (what a DNS-rebinding page sends) gets 421 on every
/// endpoint; loopback names and the listen address with its port are
/// served, and so is a name listed in `admin_allowed_hosts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_headers_are_refused_on_every_endpoint() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .arg("--admin-allowed-hosts")
            .arg("pgvigil.internal,proxy.example:8443")
            .spawn()
            .await?;
        let port = vigil.admin_port();
        let refused = [
            format!("rebind.attacker.example:{port}"),
            "rebind.attacker.example".to_string(),
            format!("localhost:{}", port.wrapping_add(1)),
            "proxy.example:9999".to_string(),
        ];
        for path in PATHS {
            for host in &refused {
                let reply = vigil.http_request("GET", path, &[("Host", host)]).await?;
                ensure!(
                    reply.status == 421,
                    "GET {path} with Host {host}: {} {}",
                    reply.status,
                    reply.body
                );
            }
        }
        let served = [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "pgvigil.internal".to_string(),
            "proxy.example:8443".to_string(),
        ];
        for host in &served {
            let reply = vigil
                .http_request("GET", "/api/queries", &[("Host", host)])
                .await?;
            ensure!(
                reply.status == 200,
                "GET /api/queries with Host {host}: {} {}",
                reply.status,
                reply.body
            );
        }
        Ok(())
    })
    .await
}

/// `POST /api/reset` as a form could send it (form or text content
/// types, or none) is refused with 403; with `Content-Type:
/// application/json` or `X-Pgvigil: 1` it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_needs_json_or_the_pgvigil_header() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster()).spawn().await?;
        let formlike: [&[(&str, &str)]; 4] = [
            &[],
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &[("Content-Type", "text/plain")],
            &[("Content-Type", "multipart/form-data; boundary=x")],
        ];
        for headers in formlike {
            let reply = vigil.http_request("POST", "/api/reset", headers).await?;
            ensure!(
                reply.status == 403,
                "POST /api/reset with {headers:?}: {} {}",
                reply.status,
                reply.body
            );
        }
        for headers in [
            &[("Content-Type", "application/json")][..],
            &[("X-Pgvigil", "1")][..],
        ] {
            let reply = vigil.http_request("POST", "/api/reset", headers).await?;
            ensure!(
                reply.status == 200 && reply.json()?["reset"] == true,
                "POST /api/reset with {headers:?}: {} {}",
                reply.status,
                reply.body
            );
        }
        // Reading needs neither.
        let reply = vigil.http_request("GET", "/api/queries", &[]).await?;
        ensure!(reply.status == 200, "GET /api/queries: {}", reply.status);
        Ok(())
    })
    .await
}
