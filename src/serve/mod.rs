//! `geoexp serve`: the seed's local inference server (its `src/app`), on axum and tokio.
//!
//! | file         | owns                                                                  |
//! |--------------|-----------------------------------------------------------------------|
//! | `config.rs`  | [`ServeConfig`]: address, directories, limits                          |
//! | `models.rs`  | [`ModelStore`]: listing, safe name resolution, LRU of loaded models     |
//! | `upload.rs`  | multipart uploads read within the size and count limits                |
//! | `routes.rs`  | the endpoints; decoding goes to blocking threads, `workers` at a time   |
//! | `batcher.rs` | one inference thread per loaded model, batching concurrent requests    |
//! | `error.rs`   | [`ApiError`]: status + `{"error": ...}`                                 |
//! | `index.html` | `GET /`: upload four photos, see the answer on a map of the classes     |
//! | `openapi.json` | `GET /openapi.json`                                                   |
//!
//! Safety: the server reads only checkpoints inside the model directory and images under
//! the data root (links leading out are refused before anything is opened); uploads are
//! bounded per file and per request; a panic while handling one request answers 500 to
//! that request and nothing else.

mod batcher;
mod config;
mod error;
mod models;
mod routes;
mod upload;

use std::any::Any;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;

pub use config::{DEFAULT_PORT, ServeConfig};
pub use error::ApiError;
pub use models::{Batching, ModelStore};
pub use routes::{AppState, OPENAPI_JSON, SKIPPED_HEADER};

use crate::train::device::select_device;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The model directory is missing or unreadable.
    #[error("{0} (set it with --models or GEOEXP_SERVE_MODELS)")]
    Models(std::io::Error),
    /// The data root is missing or not a directory.
    #[error("data root {}: {message} (set it with --data-root or GEOEXP_SERVE_DATA_ROOT)", path.display())]
    DataRoot {
        /// The path given.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The device is unavailable.
    #[error(transparent)]
    Device(#[from] crate::train::device::DeviceError),
    /// The runtime or the server failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The application for `config`: routes, state and the panic guard.
///
/// # Errors
/// An unusable model directory, data root or device.
pub fn app(config: &ServeConfig) -> Result<Router, ServeError> {
    let device = select_device(&config.device)?;
    let batching = Batching {
        batch_size: config.batch_size.max(1),
        top: config.top_classes,
    };
    let models = ModelStore::new(&config.models_dir, device, config.max_models, batching)
        .map_err(ServeError::Models)?;
    let data_root = match &config.data_root {
        None => None,
        Some(path) => {
            let canonical = path.canonicalize().map_err(|e| ServeError::DataRoot {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if !canonical.is_dir() {
                return Err(ServeError::DataRoot {
                    path: path.clone(),
                    message: "not a directory".into(),
                });
            }
            Some(canonical)
        }
    };
    let state = AppState::new(config, models, data_root);
    Ok(guard(routes::routes(state, config.max_body_bytes())))
}

/// Wraps `router` so a panic in a handler answers 500 instead of dropping the connection,
/// and every request is logged (at info level: `geoexp -v serve`).
pub fn guard(router: Router) -> Router {
    router
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(log_request))
        .layer(CatchPanicLayer::custom(|payload: Box<dyn Any + Send>| {
            let message = panic_message(payload.as_ref());
            tracing::error!("a request panicked: {message}");
            ApiError::internal(format!(
                "the request failed unexpectedly ({message}); the server keeps running"
            ))
            .into_response()
        }))
}

/// Gives every error answer axum makes by itself (405 for a wrong method, a rejected
/// body) the `{"error": ...}` body the API promises; geoexp's own errors are JSON already.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let message = match (status, text) {
        (axum::http::StatusCode::METHOD_NOT_ALLOWED, _) => {
            "method not allowed on this endpoint; GET /openapi.json describes the API".to_owned()
        }
        (_, Some(text)) => format!("{reason}: {text}"),
        (_, None) => reason,
    };
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} → {} in {:.1} ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Serves `config` until Ctrl-C or SIGTERM; `ready` is called with the bound address (the
/// real port when `config.port` is 0) before the first request is accepted.
///
/// # Errors
/// See [`ServeError`].
pub fn serve(config: &ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let app = app(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        ready(listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok(())
    })
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("kaboom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_router_keeps_serving() {
        let app = guard(
            Router::new()
                .route("/boom", get(boom))
                .route("/ok", get(|| async { "fine" })),
        );
        let boom = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(boom.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("kaboom"));
        let ok = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
