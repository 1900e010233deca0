//! The web client is served at `/` with a restrictive Content-Security-Policy.

use crate::support::*;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn root_serves_the_client_html_with_security_headers() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/html"), "{}", header(&r, "content-type"));
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert_eq!(header(&r, "referrer-policy"), "no-referrer");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let csp = header(&r, "content-security-policy").to_string();
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    // The signaling WebSocket goes to the host the page came from, and nowhere else.
    let connect = csp.split(';').map(str::trim).find(|d| d.starts_with("connect-src")).expect("connect-src");
    assert_eq!(connect, format!("connect-src 'self' ws://{0} wss://{0}", app.addr));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"<script type="module" src="app.js">"#), "index.html loads the app module");
}

#[tokio::test]
async fn modules_are_served_as_javascript_and_other_paths_are_not_found() {
    let app = spawn_app().await;
    for module in ["/app.js", "/connection.js", "/state.js"] {
        let r = app.http.get(app.url(module)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{module}");
        assert!(header(&r, "content-type").starts_with("text/javascript"), "{module}: {}", header(&r, "content-type"));
        assert!(header(&r, "content-security-policy").contains("default-src 'none'"));
    }
    let css = app.http.get(app.url("/style.css")).send().await.unwrap();
    assert!(header(&css, "content-type").starts_with("text/css"));
    // The generated type declarations are for the type check, not for browsers.
    for missing in ["/protocol.d.ts", "/nope.js", "/../Cargo.toml", "/v1/nope"] {
        let r = app.http.get(app.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    let r = app.http.post(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // The API is untouched by the fallback.
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}
