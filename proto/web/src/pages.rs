//! The pages, embedded in the binary from `proto/web/assets/`: the demo shop (`/`,
//! `/checkout`), the embeddable `/widget.js`, the agent `/console` and the supervisor
//! `/wallboard`, with their modules and styles. Plain files written for centralino, no
//! bundler: what is in the folder is what the browser gets.
//!
//! Every page is served with a strict Content-Security-Policy (scripts and styles from
//! the node only, no inline script), `X-Content-Type-Options: nosniff` and no caching of
//! the HTML.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The policy of every page: scripts, styles, images and calls from the node itself.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The pages by their short address.
const PAGES: [(&str, &str); 4] = [
    ("/", "index.html"),
    ("/checkout", "checkout.html"),
    ("/console", "console.html"),
    ("/wallboard", "wallboard.html"),
];

/// The page routes: the short addresses of [`PAGES`] and every embedded file at its own
/// path (`assets/js/api.js` at `/js/api.js`). No catch-all: the gRPC routes share the
/// listener.
pub fn routes() -> Router {
    let mut router = Router::new();
    for (route, name) in PAGES {
        router = router.route(route, get(move || async move { file(name) }));
    }
    for name in files() {
        if name.starts_with('.') || name.ends_with("README.md") {
            continue;
        }
        let route = format!("/{name}");
        router = router.route(&route, get(move || async move { file(&name) }));
    }
    router
}

/// Returns the names of the embedded files (for tests and the README).
pub fn files() -> Vec<String> {
    let mut out = Vec::new();
    collect(&ASSETS, &mut out);
    out.sort();
    out
}

fn collect(dir: &Dir<'static>, out: &mut Vec<String>) {
    for file in dir.files() {
        out.push(file.path().to_string_lossy().into_owned());
    }
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Answers one embedded file; a path that is not one (or climbs out) is 404.
fn file(path: &str) -> Response {
    let clean = path.trim_start_matches('/');
    let Some(found) = (!clean.split('/').any(|part| part == ".." || part.is_empty()))
        .then(|| ASSETS.get_file(clean))
        .flatten()
    else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let mut response = found.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(clean)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if clean.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_out_of_the_folder_is_not_found() {
        for path in ["../Cargo.toml", "a/../../x", "", "/"] {
            assert_eq!(file(path).status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
