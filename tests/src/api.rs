//! A minimal HTTP/1.1 client for pgvigil's admin listener (JSON API,
//! `/metrics`, health) and other local HTTP servers: one request per
//! connection (`Connection: close`), so the whole reply is read to EOF.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::vigil::Pgvigil;

/// How long one admin request may take, connect to last byte.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// A reply from the admin listener.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ApiResponse {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "admin API reply (status {}) is not JSON: {:?}",
                self.status, self.body
            )
        })
    }
}

impl Pgvigil {
    /// Sends `method path` to the admin listener and returns the reply, whatever its status.
    /// Requests other than GET carry `X-Pgvigil: 1`, as scripts must (the
    /// listener refuses what a cross-site form could send).
    pub async fn api_request(&self, method: &str, path: &str) -> Result<ApiResponse> {
        let port = self.admin_port();
        let mut headers = vec![("Accept", "application/json")];
        if method != "GET" {
            headers.push(("X-Pgvigil", "1"));
        }
        exchange(port, "the admin listener", method, path, &headers)
            .await
            .with_context(|| format!("{method} {path} on the admin listener (port {port})"))
    }

    /// `method path` on the admin listener with exactly the given extra
    /// headers (a `Host` among them replaces the default one), whatever
    /// the reply's status.
    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<ApiResponse> {
        let port = self.admin_port();
        exchange(port, "the admin listener", method, path, headers)
            .await
            .with_context(|| format!("{method} {path} on the admin listener (port {port})"))
    }

    /// `GET path` on the admin listener with only the given extra headers
    /// (no `Accept` unless given), whatever the reply's status and content type.
    pub async fn http_get(&self, path: &str, headers: &[(&str, &str)]) -> Result<ApiResponse> {
        let port = self.admin_port();
        exchange(port, "the admin listener", "GET", path, headers)
            .await
            .with_context(|| format!("GET {path} on the admin listener (port {port})"))
    }

    /// `GET path`, which must answer 200 with a JSON body.
    pub async fn api_get(&self, path: &str) -> Result<Value> {
        self.api_ok("GET", path).await
    }

    /// `POST path` (empty body), which must answer 200 with a JSON body.
    pub async fn api_post(&self, path: &str) -> Result<Value> {
        self.api_ok("POST", path).await
    }

    /// `POST path` with a JSON body (and `Content-Type: application/json`),
    /// whatever the reply's status.
    pub async fn api_post_json(&self, path: &str, body: &str) -> Result<ApiResponse> {
        let port = self.admin_port();
        let headers = [
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ];
        exchange_body(port, "the admin listener", "POST", path, &headers, body)
            .await
            .with_context(|| format!("POST {path} on the admin listener (port {port})"))
    }

    async fn api_ok(&self, method: &str, path: &str) -> Result<Value> {
        let reply = self.api_request(method, path).await?;
        if reply.status != 200 {
            bail!(
                "{method} {path} answered {} (expected 200): {}",
                reply.status,
                reply.body
            );
        }
        reply.json()
    }
}

/// `GET path` on any HTTP/1.1 server at 127.0.0.1:`port` (Prometheus' API,
/// for one), with only the given extra headers, whatever the reply's status.
pub async fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<ApiResponse> {
    exchange(port, "the HTTP server", "GET", path, headers)
        .await
        .with_context(|| format!("GET {path} on 127.0.0.1:{port}"))
}

/// One request (`Connection: close`), the whole reply read to EOF.
async fn exchange(
    port: u16,
    what: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<ApiResponse> {
    exchange_body(port, what, method, path, headers, "").await
}

async fn exchange_body(
    port: u16,
    what: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<ApiResponse> {
    let exchange = async {
        let mut stream = connect(port, what).await?;
        let mut request = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        stream
            .write_all(request.as_bytes())
            .await
            .context("sending the request")?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .context("reading the reply")?;
        parse_response(&raw)
    };
    tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .with_context(|| format!("{method} {path}: no complete reply within {REQUEST_LIMIT:?}"))?
}

/// Connects to `what` (the admin listener, usually), retrying refused
/// connections for a moment: pgvigil may bind it just after the client listener.
async fn connect(port: u16, what: &str) -> Result<TcpStream> {
    let mut attempts = 0;
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && attempts < 40 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("connecting to {what} 127.0.0.1:{port}"))
            }
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<ApiResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "no end of headers in {} bytes: {:?}",
                raw.len(),
                String::from_utf8_lossy(raw)
            )
        })?;
    let head = std::str::from_utf8(&raw[..split]).context("reply headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x status line: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            bail!(
                "reply body truncated: Content-Length {len}, got {} bytes",
                rest.len()
            );
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(ApiResponse {
        status,
        headers,
        body: String::from_utf8(body).context("reply body is not UTF-8")?,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunked body: no chunk-size line")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).context("chunk size not UTF-8")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            bail!("chunked body truncated");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_replies() {
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}",
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.json().unwrap()["error"], "x");

        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "{\"a\":1}");
    }
}
