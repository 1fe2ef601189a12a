//! The files of `frontend/` (the dashboard, the GraphiQL page and its vendored
//! libraries), embedded in the binary (rust-embed reads them from disk in debug builds,
//! so edits show without a rebuild), served at `/` with a strict CSP and
//! `Referrer-Policy: no-referrer`.
use axum::{
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "frontend/"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// `GET /` and `GET /<file>`: an embedded file, or 404.
pub async fn asset(uri: Uri) -> Response {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    embedded(path)
}

/// The CSP of every page: scripts and styles from this origin only (no inline script;
/// GraphiQL's editor sets inline styles, so its page allows those), data: images and
/// fonts (GraphiQL's CSS inlines its fonts), requests to this origin only.
fn csp(path: &str) -> &'static str {
    if path.starts_with("graphiql") {
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    } else {
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    }
}

/// The names of the dashboard's own operations (`frontend/operations.js`): operations
/// this server knows, which `/metrics` may name.
pub fn dashboard_operations() -> Vec<String> {
    let Some(file) = Assets::get("operations.js") else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&file.data);
    let mut names = Vec::new();
    for kind in ["query ", "mutation ", "subscription "] {
        for part in text.split(kind).skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// One embedded file by its path under `frontend/`, or 404.
pub fn embedded(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut resp = file.data.into_owned().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    // The files change with the binary: always revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Nothing a page loads learns the page's address (which may have carried a token).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp(path)),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dashboards_operations_are_read_from_its_module() {
        let names = super::dashboard_operations();
        for expected in [
            "ProductsPage",
            "CacheStats",
            "UpdateProduct",
            "ProductChanged",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }
}
