//! The web dashboard: `GET /` serves one page whose HTML, CSS and script
//! are compiled into the binary (no CDN, works offline). The page reads the
//! JSON API (`/api/queries`, `/api/queries/{fingerprint}`, `/api/slow`,
//! `/api/n-plus-one`, `/api/pools`, `/api/insight`, `/api/latency`) every 2 seconds and
//! draws its charts as inline SVG with its own script. The advisor's
//! endpoints (`/api/advice`, `/api/health`, `/api/markers`,
//! `/api/regressions`, `/api/queries/{fingerprint}/plan`) feed panels of
//! their own, and markers are lines on the percentile chart's time axis;
//! each panel says so when this pgvigil answers with 404 or 503 (advisor
//! or analytics off), so the rest of the page works without them.
//!
//! The page and its assets carry no data, so they need no token; the API
//! calls they make do (the page takes it from `?token=` or asks for it).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Everything the page loads comes from this listener; query texts are
/// untrusted, so no inline script or markup injection can run either.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard's routes: `/` and its assets under `/dashboard/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            // Assets change with the binary; always revalidate.
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        assert!(INDEX_HTML.contains("src=\"dashboard/app.js\""));
        assert!(INDEX_HTML.contains("href=\"dashboard/style.css\""));
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("src=\"//"));
        }
    }
}
