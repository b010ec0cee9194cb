//! Fetching from the admin JSON API: a minimal HTTP/1.1 GET client over a
//! plain `TcpStream` (the admin listener is local, plain HTTP, and answers
//! small JSON bodies), and tolerant parsers from JSON to the view's rows.
//!
//! Nothing here panics on what the network hands it: a refused connection,
//! a truncated response or JSON of an unexpected shape all become a
//! [`FetchError`] or a default field value.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{AdviceCounts, DetectionRow, Extra, Insight, PoolRow, QueryRow, SlowRow, SortKey};

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why a request brought back no usable data.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// No TCP connection, or the connection broke before a full response.
    Unreachable(String),
    /// An HTTP status other than 2xx, with the API's `error` message when it gave one.
    Status(u16, String),
    /// A response that is not HTTP or not the JSON the view expects.
    Malformed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(m) => write!(f, "{m}"),
            FetchError::Status(code, m) if m.is_empty() => write!(f, "HTTP {code}"),
            FetchError::Status(code, m) => write!(f, "HTTP {code}: {m}"),
            FetchError::Malformed(m) => write!(f, "malformed response: {m}"),
        }
    }
}

/// Where the admin listener is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// `host:port`.
    addr: String,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClient {
    /// `addr` is `host:port`, optionally written as `http://host:port[/]`.
    pub fn new(addr: &str, token: Option<String>, timeout: Duration) -> ApiClient {
        let addr = addr
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        ApiClient {
            addr,
            token: token.filter(|t| !t.is_empty()),
            timeout,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `GET path`, returning the status code and the (de-chunked) body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), FetchError> {
        let deadline = Instant::now() + self.timeout;
        let unreachable = |e: std::io::Error| FetchError::Unreachable(e.to_string());
        let targets = self
            .addr
            .to_socket_addrs()
            .map_err(|e| FetchError::Unreachable(format!("bad address: {e}")))?;
        let mut last = FetchError::Unreachable("address resolves to nothing".into());
        let mut stream = None;
        for target in targets {
            match TcpStream::connect_timeout(&target, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = unreachable(e),
            }
        }
        let mut stream = stream.ok_or(last)?;
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50));
        stream
            .set_read_timeout(Some(remaining))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(remaining))
            .map_err(unreachable)?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pgvigil-top\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if Instant::now() >= deadline {
                return Err(FetchError::Unreachable(format!(
                    "no complete answer within {:?}",
                    self.timeout
                )));
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.len() > MAX_RESPONSE_BYTES {
                        return Err(FetchError::Malformed(format!(
                            "response larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(unreachable(e)),
            }
        }
        parse_response(&raw)
    }

    /// `GET path` and parse a 2xx body as JSON. A non-2xx answer becomes
    /// [`FetchError::Status`] carrying the API's `{"error": ...}` message.
    pub fn get_json(&self, path: &str) -> Result<Value, FetchError> {
        let (status, body) = self.get(path)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect()
                });
            return Err(FetchError::Status(status, message));
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Malformed(format!("{path}: {e}")))
    }
}

/// Splits a complete HTTP/1.1 response into status and body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), FetchError> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        if raw.is_empty() {
            return Err(FetchError::Unreachable(
                "connection closed without an answer".into(),
            ));
        }
        return Err(FetchError::Malformed("no end of HTTP headers".into()));
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(FetchError::Malformed(format!(
            "not an HTTP response: {:?}",
            status_line.chars().take(60).collect::<String>()
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FetchError::Malformed(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(FetchError::Unreachable(format!(
                "connection closed after {} of {n} body bytes",
                body.len()
            )));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked transfer-encoded body (trailers are ignored).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")
            .ok_or_else(|| FetchError::Malformed("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| FetchError::Malformed(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(FetchError::Malformed("truncated chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        data = data.strip_prefix(b"\r\n").unwrap_or(data);
    }
}

pub(crate) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number(v: &Value, key: &str) -> f64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub(crate) fn count(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The array under `key` of a JSON object, or a [`FetchError::Malformed`].
fn array<'a>(body: &'a Value, key: &str, path: &str) -> Result<&'a Vec<Value>, FetchError> {
    body.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| FetchError::Malformed(format!("{path}: no `{key}` array")))
}

/// `{"queries": [...]}` from `/api/queries`.
pub fn parse_queries(body: &Value) -> Result<Vec<QueryRow>, FetchError> {
    Ok(array(body, "queries", "/api/queries")?
        .iter()
        .filter(|q| q.is_object())
        .map(|q| QueryRow {
            fingerprint: text(q, "fingerprint"),
            query: text(q, "query"),
            statement: text(q, "statement"),
            calls: count(q, "calls"),
            errors: count(q, "errors"),
            rows: count(q, "rows"),
            total_ms: number(q, "total_ms"),
            mean_ms: number(q, "mean_ms"),
            p95_ms: number(q, "p95_ms"),
            calls_per_sec: None,
        })
        .collect())
}

/// `{"pools": [...]}` from `/api/pools`.
pub fn parse_pools(body: &Value) -> Result<Vec<PoolRow>, FetchError> {
    Ok(array(body, "pools", "/api/pools")?
        .iter()
        .filter(|p| p.is_object())
        .map(|p| PoolRow {
            database: text(p, "database"),
            user: text(p, "user"),
            pool_mode: text(p, "pool_mode"),
            pool_size: count(p, "pool_size"),
            active: count(p, "active"),
            idle: count(p, "idle"),
            overflow: count(p, "overflow"),
            waiting: count(p, "waiting"),
            clients: count(p, "clients"),
            utilization: number(p, "utilization"),
        })
        .collect())
}

/// `{"events": [...]}` from `/api/slow`.
pub fn parse_slow(body: &Value) -> Result<Vec<SlowRow>, FetchError> {
    Ok(array(body, "events", "/api/slow")?
        .iter()
        .filter(|e| e.is_object())
        .map(|e| SlowRow {
            at: text(e, "at"),
            rule: text(e, "rule"),
            query: text(e, "query"),
            duration_ms: number(e, "duration_ms"),
            database: text(e, "database"),
            user: text(e, "user"),
            application_name: text(e, "application_name"),
        })
        .collect())
}

/// `{"detections": [...]}` from `/api/n-plus-one`.
pub fn parse_detections(body: &Value) -> Result<Vec<DetectionRow>, FetchError> {
    Ok(array(body, "detections", "/api/n-plus-one")?
        .iter()
        .filter(|d| d.is_object())
        .map(|d| DetectionRow {
            kind: text(d, "kind"),
            query: text(d, "query"),
            parent_query: text(d, "parent_query"),
            repeats: count(d, "repeats"),
            occurrences: count(d, "occurrences"),
            last_seen: text(d, "last_seen"),
            suggestion: text(d, "suggestion"),
        })
        .collect())
}

/// `/api/insight`.
pub fn parse_insight(body: &Value) -> Result<Insight, FetchError> {
    if !body.is_object() {
        return Err(FetchError::Malformed("/api/insight: not an object".into()));
    }
    Ok(Insight {
        fingerprints: count(body, "fingerprints"),
        max_fingerprints: count(body, "max_fingerprints"),
        evictions: count(body, "fingerprint_evictions"),
    })
}

/// `{"advice": [...]}` from `/api/advice`: how many, by kind, in the
/// order the API documents the kinds (unknown kinds last, by name).
pub fn parse_advice(body: &Value) -> Result<AdviceCounts, FetchError> {
    const ORDER: [&str; 5] = [
        "create_index",
        "unused_index",
        "duplicate_index",
        "invalid_index",
        "fk_without_index",
    ];
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    let mut total = 0;
    for advice in array(body, "advice", "/api/advice")?
        .iter()
        .filter(|a| a.is_object())
    {
        total += 1;
        let kind = text(advice, "kind");
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => by_kind.push((kind, 1)),
        }
    }
    let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
    by_kind.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    Ok(AdviceCounts { total, by_kind })
}

/// `/api/regressions`: its `total` (regressions since start, events
/// dropped included), else the length of its `regressions` list.
pub fn parse_regressions(body: &Value) -> Result<u64, FetchError> {
    if let Some(Value::Number(_)) = body.get("total") {
        return Ok(count(body, "total"));
    }
    Ok(array(body, "regressions", "/api/regressions")?.len() as u64)
}

/// An optional endpoint's answer: 404 and 503 mean this pgvigil does not
/// serve it now (an older version, the advisor or analytics off), which
/// the view shows quietly rather than as an error.
fn extra<T>(
    result: Result<Value, FetchError>,
    parse: impl Fn(&Value) -> Result<T, FetchError>,
) -> Extra<T> {
    match result.and_then(|b| parse(&b)) {
        Ok(v) => Extra::Value(v),
        Err(FetchError::Status(404 | 503, m)) => Extra::Off(m),
        Err(e) => Extra::Failed(e.to_string()),
    }
}

/// What the pools endpoint said: rows, or that this pgvigil has none.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolsFetch {
    Rows(Vec<PoolRow>),
    /// 404: a pgvigil without `/api/pools`.
    NotServed,
    Failed(FetchError),
}

/// One refresh: everything the view shows, fetched in one go.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub queries: Result<Vec<QueryRow>, FetchError>,
    pub pools: PoolsFetch,
    pub slow: Result<Vec<SlowRow>, FetchError>,
    pub detections: Result<Vec<DetectionRow>, FetchError>,
    pub insight: Result<Insight, FetchError>,
    /// `/api/advice`.
    pub advice: Extra<AdviceCounts>,
    /// `/api/regressions`.
    pub regressions: Extra<u64>,
}

impl ApiClient {
    /// Fetches all endpoints. Once one request finds the listener unreachable
    /// the others are not tried, so a dead pgvigil costs one timeout per refresh.
    pub fn snapshot(&self, sort: SortKey, limit: usize, slow_limit: usize) -> Snapshot {
        let queries = self
            .get_json(&format!(
                "/api/queries?sort={}&limit={limit}",
                sort.api_name()
            ))
            .and_then(|b| parse_queries(&b));
        let at = Instant::now();
        if let Err(e @ FetchError::Unreachable(_)) = &queries {
            return Snapshot {
                at,
                queries: Err(e.clone()),
                pools: PoolsFetch::Failed(e.clone()),
                slow: Err(e.clone()),
                detections: Err(e.clone()),
                insight: Err(e.clone()),
                advice: Extra::Failed(e.to_string()),
                regressions: Extra::Failed(e.to_string()),
            };
        }
        let pools = match self.get_json("/api/pools").and_then(|b| parse_pools(&b)) {
            Ok(rows) => PoolsFetch::Rows(rows),
            Err(FetchError::Status(404, _)) => PoolsFetch::NotServed,
            Err(e) => PoolsFetch::Failed(e),
        };
        Snapshot {
            at,
            queries,
            pools,
            slow: self
                .get_json(&format!("/api/slow?limit={slow_limit}"))
                .and_then(|b| parse_slow(&b)),
            detections: self
                .get_json("/api/n-plus-one")
                .and_then(|b| parse_detections(&b)),
            insight: self
                .get_json("/api/insight")
                .and_then(|b| parse_insight(&b)),
            advice: extra(self.get_json("/api/advice"), parse_advice),
            regressions: extra(self.get_json("/api/regressions?limit=1"), parse_regressions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_length_body() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw), Ok((200, b"{}".to_vec())));
    }

    #[test]
    fn chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok((200, b"{\"a\":1}".to_vec())));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for raw in [
            &b""[..],
            b"hello",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nab",
        ] {
            assert!(
                parse_response(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn queries_tolerate_missing_and_odd_fields() {
        let body = json!({"queries": [
            {"fingerprint": "00ff", "query": "SELECT $1", "calls": 3, "total_ms": 1.5, "p95_ms": "0.7"},
            {"calls": -1, "total_ms": null, "query": 42},
            "not an object",
        ]});
        let rows = parse_queries(&body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].calls, 3);
        assert_eq!(rows[0].p95_ms, 0.7);
        assert_eq!(rows[1].calls, 0);
        assert_eq!(rows[1].query, "42");
        assert!(parse_queries(&json!({"rows": []})).is_err());
        assert!(parse_queries(&json!([1, 2])).is_err());
    }

    #[test]
    fn advice_is_counted_by_kind_in_the_documented_order() {
        let body = json!({"advice": [
            {"kind": "unused_index", "table": "t"},
            {"kind": "create_index", "table": "t"},
            {"kind": "something_new"},
            {"kind": "create_index"},
            "not an object",
        ]});
        let counts = parse_advice(&body).unwrap();
        assert_eq!(counts.total, 4);
        let kinds: Vec<(&str, u64)> = counts
            .by_kind
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(
            kinds,
            [
                ("create_index", 2),
                ("unused_index", 1),
                ("something_new", 1)
            ]
        );
        assert_eq!(parse_advice(&json!({"advice": []})).unwrap().total, 0);
        assert!(parse_advice(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn regressions_take_the_total_else_the_list() {
        assert_eq!(
            parse_regressions(&json!({"regressions": [{}], "total": 7})),
            Ok(7)
        );
        assert_eq!(parse_regressions(&json!({"regressions": [{}, {}]})), Ok(2));
        assert!(parse_regressions(&json!({})).is_err());
    }

    #[test]
    fn a_missing_or_unready_endpoint_is_off_not_an_error() {
        let off = |code| {
            extra(
                Err(FetchError::Status(code, "advisor off".into())),
                parse_advice,
            )
        };
        assert_eq!(off(404), Extra::Off("advisor off".into()));
        assert_eq!(off(503), Extra::Off("advisor off".into()));
        assert!(matches!(off(500), Extra::Failed(_)));
        assert!(matches!(
            extra(Ok(json!({"rows": []})), parse_advice),
            Extra::Failed(_)
        ));
    }

    #[test]
    fn unreachable_listener_is_reported() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ApiClient::new(
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_millis(500),
        );
        assert_eq!(client.addr(), format!("127.0.0.1:{port}"));
        let snap = client.snapshot(SortKey::Calls, 10, 10);
        assert!(matches!(snap.queries, Err(FetchError::Unreachable(_))));
        assert!(matches!(snap.pools, PoolsFetch::Failed(_)));
    }
}
