//! The web client: the files of `web-client/src/`, embedded in the binary and served at `/`.
//!
//! The client is a no-build ES-module app (see `web-client/README.md`), so the files are served as
//! they are. In debug builds `rust-embed` reads them from disk, so edits show on reload; release
//! builds carry them inside the binary, so `cargo run --release` needs nothing else.
//!
//! Every response carries a Content-Security-Policy that allows only same-origin scripts, styles,
//! images and connections (the signaling WebSocket goes to the same host), `no-referrer` (a join
//! link's fragment never leaves the browser, and no other URL leaks either) and `no-cache` (a
//! browser revalidates, so an upgrade of the server is an upgrade of the client).

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The client's files.
#[derive(RustEmbed)]
#[folder = "web-client/src/"]
struct Assets;

/// The policy, before the `connect-src` that names the request's host (see [`csp`]).
const CSP_BASE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; media-src 'self' blob: mediastream:; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Serves a file of the web client (`index.html` for `/`); the router's fallback.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")]).into_response();
    }
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let path = if path.is_empty() { "index.html" } else { path };
    // Only plain relative names of embedded files; never anything that climbs or is ambiguous.
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") || path.contains('\\') {
        return not_found();
    }
    let Some(content_type) = content_type(path) else {
        return not_found();
    };
    let Some(file) = Assets::get(path) else {
        return not_found();
    };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp(&headers));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(self), microphone=(self), geolocation=(), payment=(), usb=()"),
    );
    response
}

fn not_found() -> Response {
    crate::api::error::ApiError::not_found("page").into_response()
}

/// The content type of a servable file, by extension. Anything else (the generated `.d.ts`
/// protocol types, stray files) is not served.
fn content_type(path: &str) -> Option<&'static str> {
    if path.ends_with(".d.ts") {
        return None;
    }
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// The policy with `connect-src` for the signaling WebSocket. `'self'` covers `ws:`/`wss:` to the
/// same host in current browsers (CSP level 3); older Safari needs the host spelled out, so a
/// well-formed `Host` is named too. It only ever names the host the page itself came from.
fn csp(headers: &HeaderMap) -> HeaderValue {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_plain_host(h));
    let connect = match host {
        Some(h) => format!("connect-src 'self' ws://{h} wss://{h}"),
        None => "connect-src 'self'".to_string(),
    };
    HeaderValue::from_str(&format!("{CSP_BASE}; {connect}"))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// A host name or address with an optional port: letters, digits, `.`, `-`, `:`, `[`, `]`.
fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), Some("text/html; charset=utf-8"));
        assert_eq!(content_type("app.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("style.css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type("protocol.d.ts"), None);
        assert_eq!(content_type("README"), None);
    }

    #[tokio::test]
    async fn paths_that_climb_are_not_found() {
        for path in ["/../Cargo.toml", "/./index.html", "//index.html", "/a/../index.html", "/..\\x.js"] {
            let uri: Uri = path.parse().unwrap();
            let r = serve(Method::GET, uri, HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let r = serve(Method::GET, Uri::from_static("/"), HeaderMap::new()).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn csp_names_only_a_plain_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let v = csp(&h);
        let v = v.to_str().unwrap();
        assert!(v.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080"));
        assert!(v.contains("script-src 'self'"));
        h.insert(header::HOST, HeaderValue::from_static("evil.example; script-src *"));
        assert!(csp(&h).to_str().unwrap().ends_with("connect-src 'self'"));
    }
}
