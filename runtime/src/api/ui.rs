//! The web dashboard: static files under `runtime/ui/`, embedded in the
//! binary at build time and served at `/ui`.
//!
//! The page is plain HTML, CSS and JavaScript modules (no framework, no
//! build step, nothing fetched from elsewhere). It polls the same HTTP API
//! a script would (`/v1/stats`, `/v1/tasks`, `/v1/executors`,
//! `/v1/queries`, `/v1/alerts`, `/v1/models`) about once a second and draws
//! its charts itself.
//!
//! - `GET /` and `GET /ui`: redirect to `/ui/`.
//! - `GET /ui/`: the page; `GET /ui/{path}`: its assets.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

/// The dashboard's files.
#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

/// The dashboard routes.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
}

/// The content type of a file, from its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, content_type(path)),
                // The files change with the binary; always revalidate.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            file.data.into_owned(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no dashboard file {path:?}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_modules_are_embedded() {
        for file in ["index.html", "style.css", "app.js"] {
            assert!(Assets::get(file).is_some(), "{file} is not embedded");
        }
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x/y.css"), "text/css; charset=utf-8");
    }
}
