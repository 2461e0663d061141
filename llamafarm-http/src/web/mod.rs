//! The web app served by `lf serve` on the API port: projects, documents, retrieval,
//! chat, models and status in the browser.
//!
//! One HTML shell (`GET /` for a browser, `GET /ui` and every `GET /ui/...` page), one
//! script and one stylesheet, all compiled into the binary: nothing is built with Node
//! and nothing loads from outside the server (the shell's `Content-Security-Policy`
//! allows only this origin). The script renders each page from the documented JSON API,
//! so the app can do nothing a client of the API cannot. `GET /` with
//! `Accept: application/json` (or without `text/html`) still answers the JSON root.
//!
//! When the router is mounted under a prefix, the shell tells the script the prefix
//! (`data-base`), so the app works there too.

use axum::extract::{OriginalUri, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const SHELL: &str = include_str!("shell.html");

/// The shell's policy: scripts, styles, fetches and images from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A content hash of the assets: their URLs carry it, so they can be cached for good.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in APP_JS.bytes().chain(APP_CSS.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
});

/// The app's routes (no state; merged into the API router).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/{*rest}", get(page))
        .route("/ui/assets/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/ui/assets/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
}

/// Whether a request for `/` comes from a browser (its `Accept` names `text/html`).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// Paths anyone may load without an API key: the shell and its assets hold no data
/// (the app asks for a key and sends it with its API calls).
pub(crate) fn is_public(method: &axum::http::Method, path: &str, headers: &HeaderMap) -> bool {
    method == axum::http::Method::GET && (path == "/ui" || path.starts_with("/ui/") || (path == "/" && wants_html(headers)))
}

async fn page(req: Request) -> Response {
    shell(&req)
}

/// The HTML shell for `req`, with the prefix the router is mounted under.
pub(crate) fn shell(req: &Request) -> Response {
    let inner = req.uri().path();
    let outer = req.extensions().get::<OriginalUri>().map(|o| o.path().to_string()).unwrap_or_else(|| inner.to_string());
    let outer = outer.trim_end_matches('/');
    let base = if inner == "/" { outer } else { outer.strip_suffix(inner.trim_end_matches('/')).unwrap_or("") };
    let html = SHELL.replace("__BASE__", &escape(base)).replace("__V__", &ASSET_VERSION);
    let mut resp = (StatusCode::OK, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get_page(app: Router, path: &str, accept: &str) -> (StatusCode, HeaderMap, String) {
        let resp = app.oneshot(axum::http::Request::get(path).header("accept", accept).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_shell_names_its_mount_prefix_and_versioned_assets() {
        let (status, headers, html) = get_page(router(), "/ui/p/default/demo/chat", "text/html").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(r#"data-base="""#), "{html}");
        assert!(html.contains(&format!("/ui/assets/app.js?v={}", *ASSET_VERSION)));
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));
        let nested: Router = Router::new().nest("/lf", router());
        let (_, _, html) = get_page(nested.clone(), "/lf/ui/models", "text/html").await;
        assert!(html.contains(r#"data-base="/lf""#), "{html}");
        assert!(html.contains(r#"src="/lf/ui/assets/app.js"#), "{html}");
        let (status, headers, js) = get_page(nested, "/lf/ui/assets/app.js", "*/*").await;
        assert_eq!((status, headers[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "text/javascript; charset=utf-8"));
        assert_eq!(js, APP_JS);
    }

    #[test]
    fn only_the_shell_and_assets_are_public() {
        let mut html = HeaderMap::new();
        html.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml"));
        let get = axum::http::Method::GET;
        assert!(is_public(&get, "/", &html));
        assert!(!is_public(&get, "/", &HeaderMap::new()));
        assert!(is_public(&get, "/ui/assets/app.js", &HeaderMap::new()));
        assert!(!is_public(&get, "/uix", &HeaderMap::new()));
        assert!(!is_public(&get, "/v1/projects/default", &html));
        assert!(!is_public(&axum::http::Method::POST, "/ui/x", &html));
        assert_eq!(escape(r#"/a"<b>"#), "/a&quot;&lt;b&gt;");
    }
}
