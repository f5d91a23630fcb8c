//! The endpoints. Handlers check the request, move decoding and model loading onto
//! blocking threads (at most `workers` at a time) and hand the decoded views to the model's
//! [`Batcher`](super::batcher::Batcher), so the async runtime keeps accepting connections
//! while predictions run.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::images::DecodeOptions;

use crate::infer::{Answer, folders, input, scan};

use super::config::ServeConfig;
use super::error::ApiError;
use super::models::ModelStore;
use super::upload::{Limits, Upload, heading_of, read_uploads, refuse_unread};

/// The upload page.
const INDEX_HTML: &str = include_str!("index.html");
/// The OpenAPI description of every route below.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");
/// Response header giving how many folders `predict-directory` left out.
pub const SKIPPED_HEADER: &str = "x-geoexp-skipped";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    models: ModelStore,
    data_root: Option<PathBuf>,
    limits: Limits,
    batch_size: usize,
    max_megapixels: u64,
    gate: Semaphore,
}

impl AppState {
    /// State for `config`, with `models` as the model directory and `data_root` canonical.
    pub fn new(config: &ServeConfig, models: ModelStore, data_root: Option<PathBuf>) -> Self {
        AppState(Arc::new(Shared {
            models,
            data_root,
            limits: Limits {
                max_bytes: config.max_upload_bytes,
                max_files: config.max_files.max(1),
            },
            batch_size: config.batch_size.max(1),
            max_megapixels: config.max_megapixels,
            gate: Semaphore::new(config.workers.max(1)),
        }))
    }

    /// How uploads for `model` are decoded.
    fn decode_options(&self, model: &crate::infer::Model) -> DecodeOptions {
        model
            .decode_options()
            .with_max_megapixels(self.0.max_megapixels)
    }

    /// The model directory.
    pub fn models(&self) -> &ModelStore {
        &self.0.models
    }
}

/// Every route, with the body limit that lets the upload limits, not axum's 2 MB default,
/// decide.
pub fn routes(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/openapi.json", get(openapi))
        .route("/models", get(list_models))
        .route("/model/{name}", get(model_info))
        .route("/model/{name}/predict-images", post(predict_images))
        .route(
            "/model/{name}/predict-cardinal-images",
            post(predict_cardinal_images),
        )
        .route("/model/{name}/predict-directory", post(predict_directory))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; GET /openapi.json describes the API")
}

async fn list_models(State(s): State<AppState>) -> Result<Json<Vec<String>>, ApiError> {
    let store = s.clone();
    blocking(&s, move || {
        store
            .models()
            .names()
            .map_err(|e| ApiError::internal(format!("listing the model directory: {e}")))
    })
    .await
    .map(Json)
}

/// `GET /model/{name}`: what the page needs to draw the classes.
#[derive(Serialize)]
struct ModelSummary {
    name: String,
    backbone: String,
    task: crate::vocab::Task,
    fusion: crate::vocab::Fusion,
    outputs: usize,
    image_size: u32,
    epoch: u32,
    crs: String,
    /// Class centroids as `[lat, lon]` (classification).
    centroids: Vec<[f64; 2]>,
}

async fn model_info(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ModelSummary>, ApiError> {
    let state = s.clone();
    blocking(&s, move || {
        let served = state.models().get(&name)?;
        let model = served.model();
        let info = model.info();
        Ok(ModelSummary {
            name,
            backbone: info.backbone.clone(),
            task: info.task,
            fusion: info.fusion,
            outputs: info.outputs,
            image_size: info.image_size,
            epoch: model.epoch(),
            crs: info.crs.clone(),
            centroids: info.centroids.iter().map(|c| [c[0], c[1]]).collect(),
        })
    })
    .await
    .map(Json)
}

/// `images` files, each used for all four views.
async fn predict_images(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Vec<Answer>>, ApiError> {
    if let Err(e) = s.models().locate(&name) {
        return Err(refuse_unread(multipart, e).await);
    }
    let uploads = read_uploads(multipart, s.0.limits).await?;
    if let Some(other) = uploads.iter().find(|u| u.field != "images") {
        return Err(ApiError::bad_request(format!(
            "unexpected form field `{}`; send the photos as `images` files",
            other.field
        )));
    }
    if uploads.is_empty() {
        return Err(ApiError::bad_request(
            "no images: send one or more photos as `images` files",
        ));
    }
    let state = s.clone();
    let (served, locations) = blocking(&s, move || {
        let served = state.models().get(&name)?;
        let views = decode_all(&uploads, state.decode_options(served.model()))?;
        let locations: Vec<Vec<u8>> = views
            .iter()
            .map(|v| v.repeat(crate::vocab::VIEWS))
            .collect();
        Ok((served, locations))
    })
    .await?;
    served.predict(locations).await.map(Json)
}

/// Exactly four files named `0`, `90`, `180`, `270`: one location.
async fn predict_cardinal_images(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Answer>, ApiError> {
    if let Err(e) = s.models().locate(&name) {
        return Err(refuse_unread(multipart, e).await);
    }
    let uploads = read_uploads(multipart, s.0.limits).await?;
    let ordered = cardinal_order(uploads)?;
    let state = s.clone();
    let (served, location) = blocking(&s, move || {
        let served = state.models().get(&name)?;
        let location = decode_all(&ordered, state.decode_options(served.model()))?.concat();
        Ok((served, location))
    })
    .await?;
    let mut answers = served.predict(vec![location]).await?;
    answers
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("the model returned no answer"))
}

/// The four uploads in heading order, or a 400 saying what was expected.
fn cardinal_order(uploads: Vec<Upload>) -> Result<Vec<Upload>, ApiError> {
    let names: Vec<String> = uploads.iter().map(|u| u.file_name.clone()).collect();
    let mut slots: [Option<Upload>; 4] = Default::default();
    let mut ok = uploads.len() == 4;
    for upload in uploads {
        let slot = heading_of(&upload.file_name)
            .and_then(|h| crate::vocab::HEADINGS.iter().position(|&v| v == h));
        match slot {
            Some(i) if slots[i].is_none() => slots[i] = Some(upload),
            _ => ok = false,
        }
    }
    match (ok, slots) {
        (true, [Some(a), Some(b), Some(c), Some(d)]) => Ok(vec![a, b, c, d]),
        _ => Err(ApiError::bad_request(format!(
            "expected exactly four files named 0, 90, 180 and 270 (any image extension, e.g. \
             0.jpg); got {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryRequest {
    dataset_directory_path: String,
}

/// One folder's answer in `predict-directory`.
#[derive(Serialize)]
struct Located {
    uuid: String,
    #[serde(flatten)]
    answer: Answer,
}

/// Every `<uuid>/` folder of a directory under the data root.
async fn predict_directory(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<DirectoryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    s.models().locate(&name)?;
    let Json(request) = body.map_err(|r| {
        ApiError::bad_request(format!(
            "expected JSON {{\"dataset_directory_path\": \"...\"}}: {}",
            r.body_text()
        ))
    })?;
    let root = s.0.data_root.clone().ok_or_else(|| {
        ApiError::forbidden(
            "predict-directory is disabled: start the server with --data-root DIR \
             (GEOEXP_SERVE_DATA_ROOT)",
        )
    })?;
    let dir = confined(&root, &request.dataset_directory_path)?;
    let state = s.clone();
    let (served, found) = blocking(&s, move || {
        let found = scan(&dir, Some(&root)).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((state.models().get(&name)?, Arc::new(found)))
    })
    .await?;
    // A chunk at a time, so a large directory is never decoded into memory whole.
    let mut skipped = found.skipped.clone();
    let mut located = Vec::with_capacity(found.folders.len());
    for start in (0..found.folders.len()).step_by(s.0.batch_size) {
        let (model, found) = (Arc::clone(&served), Arc::clone(&found));
        let batch_size = s.0.batch_size;
        let opts = s.decode_options(model.model());
        let (uuids, locations, unreadable) = blocking(&s, move || {
            let end = (start + batch_size).min(found.folders.len());
            let (ready, unreadable) = folders::decode(&found.folders[start..end], opts);
            let (uuids, locations): (Vec<String>, Vec<Vec<u8>>) =
                ready.into_iter().map(|(f, v)| (f.uuid.clone(), v)).unzip();
            Ok((uuids, locations, unreadable))
        })
        .await?;
        skipped.extend(unreadable);
        let answers = served.predict(locations).await?;
        located.extend(
            uuids
                .into_iter()
                .zip(answers)
                .map(|(uuid, answer)| Located { uuid, answer }),
        );
    }
    skipped.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    for s in &skipped {
        tracing::warn!("predict-directory skipped {}: {}", s.uuid, s.reason);
    }
    let mut headers = HeaderMap::new();
    headers.insert(SKIPPED_HEADER, HeaderValue::from(skipped.len()));
    Ok((headers, Json(located)).into_response())
}

/// `requested` as a canonical directory inside `root` (canonical): 403 for `..`, absolute
/// paths elsewhere and links leading out, 404 for what does not exist.
fn confined(root: &Path, requested: &str) -> Result<PathBuf, ApiError> {
    let path = Path::new(requested);
    let outside = || {
        ApiError::forbidden(format!(
            "`{requested}` is outside the data root; only directories under it can be predicted"
        ))
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let candidate = if path.is_absolute() {
        if !path.starts_with(root) {
            return Err(outside());
        }
        path.to_path_buf()
    } else {
        root.join(path)
    };
    let canonical = candidate.canonicalize().map_err(|_| {
        ApiError::not_found(format!("no directory `{requested}` under the data root"))
    })?;
    if !canonical.starts_with(root) {
        return Err(outside());
    }
    if !canonical.is_dir() {
        return Err(ApiError::not_found(format!(
            "`{requested}` is not a directory under the data root"
        )));
    }
    Ok(canonical)
}

/// Each upload decoded to one view; the first that is not an image is a 400 naming it.
///
/// A small request (the four views of a location, up to [`PARALLEL_DECODE_BYTES`]) is
/// decoded on every core, for latency. A larger one goes one file after another on this
/// request's blocking thread, so it occupies one of the `workers` and not every core, and
/// small requests beside it are not kept waiting (`benches/serve_bombs.sh`; figures in
/// `benches/README.md`).
fn decode_all(uploads: &[Upload], opts: DecodeOptions) -> Result<Vec<Vec<u8>>, ApiError> {
    let decode = |u: &Upload| {
        input::decode_upload(&u.file_name, &u.bytes, opts).map_err(|e| {
            ApiError::bad_request(format!(
                "{} (send JPEG or PNG photos)",
                crate::graph::error_chain(&e)
            ))
        })
    };
    let bytes: usize = uploads.iter().map(|u| u.bytes.len()).sum();
    if bytes <= PARALLEL_DECODE_BYTES {
        uploads.par_iter().map(decode).collect()
    } else {
        uploads.iter().map(decode).collect()
    }
}

/// Uploads up to this many bytes in all are decoded in parallel (see [`decode_all`]).
const PARALLEL_DECODE_BYTES: usize = 2 << 20;

/// Runs `work` on a blocking thread once one of the `workers` permits is free; a panic in
/// it becomes a 500 for this request only.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit =
        state.0.gate.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        })?;
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let message = super::panic_message(e.into_panic().as_ref());
            tracing::error!("a prediction panicked: {message}");
            Err(ApiError::internal(format!(
                "the prediction failed unexpectedly ({message}); the server keeps running"
            )))
        }
        Err(e) => Err(ApiError::internal(format!(
            "the prediction was cancelled: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str) -> Upload {
        Upload {
            field: "images".into(),
            file_name: name.into(),
            bytes: axum::body::Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn cardinal_uploads_are_put_in_heading_order() {
        let got = cardinal_order(
            ["270.jpg", "0.png", "180.jpeg", "90.jpg"]
                .map(upload)
                .to_vec(),
        )
        .unwrap();
        let names: Vec<&str> = got.iter().map(|u| u.file_name.as_str()).collect();
        assert_eq!(names, ["0.png", "90.jpg", "180.jpeg", "270.jpg"]);
    }

    #[test]
    fn cardinal_uploads_must_be_exactly_the_four_headings() {
        for files in [
            vec!["0.jpg", "90.jpg", "180.jpg"],
            vec!["0.jpg", "90.jpg", "180.jpg", "180.png"],
            vec!["0.jpg", "90.jpg", "180.jpg", "north.jpg"],
            vec!["0.jpg", "90.jpg", "180.jpg", "270.jpg", "0.png"],
        ] {
            let err = cardinal_order(files.iter().map(|f| upload(f)).collect()).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(
                err.message.contains("expected exactly four files"),
                "{}",
                err.message
            );
            assert!(err.message.contains(files[2]), "{}", err.message);
        }
    }

    #[test]
    fn directories_are_confined_to_the_data_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("test")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("leak")).unwrap();
        assert_eq!(confined(&root, "test").unwrap(), root.join("test"));
        let absolute = root.join("test");
        assert_eq!(
            confined(&root, absolute.to_str().unwrap()).unwrap(),
            absolute
        );
        let status = |p: &str| confined(&root, p).unwrap_err().status;
        assert_eq!(status("../etc"), StatusCode::FORBIDDEN);
        assert_eq!(status("test/../../etc"), StatusCode::FORBIDDEN);
        assert_eq!(status("/etc"), StatusCode::FORBIDDEN);
        assert_eq!(status("leak"), StatusCode::FORBIDDEN);
        assert_eq!(status("missing"), StatusCode::NOT_FOUND);
        assert_eq!(status("file"), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/",
                "/model/{name}",
                "/model/{name}/predict-cardinal-images",
                "/model/{name}/predict-directory",
                "/model/{name}/predict-images",
                "/models",
                "/openapi.json",
            ]
        );
    }
}
