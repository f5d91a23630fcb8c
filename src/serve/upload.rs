//! Reading a multipart upload within the limits: each file is read chunk by chunk and the
//! request is refused as soon as one goes over the size limit or the count goes over the
//! file limit, so an oversized upload is never held in memory whole.

use axum::body::Bytes;
use axum::extract::Multipart;
use axum::extract::multipart::{MultipartError, MultipartRejection};

use super::error::ApiError;

/// Upload limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file, bytes.
    pub max_bytes: u64,
    /// Most files.
    pub max_files: usize,
}

/// One uploaded file.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The form field's name.
    pub field: String,
    /// The file name the client sent (the field name when it sent none).
    pub file_name: String,
    /// The content.
    pub bytes: Bytes,
}

/// Reads every part of the upload.
///
/// # Errors
/// 400 for a body that is not multipart or is malformed, 413 for a file or a count over
/// the limits (and for a body over the server's total limit).
pub async fn read_uploads(
    multipart: Result<Multipart, MultipartRejection>,
    limits: Limits,
) -> Result<Vec<Upload>, ApiError> {
    let mut multipart = multipart.map_err(|r| {
        ApiError::bad_request(format!(
            "expected a multipart/form-data upload: {}",
            r.body_text()
        ))
    })?;
    let mut uploads = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        if uploads.len() == limits.max_files {
            return Err(refuse(
                multipart,
                ApiError::too_large(format!(
                    "at most {} files per request (GEOEXP_SERVE_MAX_FILES)",
                    limits.max_files
                )),
            )
            .await);
        }
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field
            .file_name()
            .map_or_else(|| name.clone(), str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if (bytes.len() + chunk.len()) as u64 > limits.max_bytes {
                drop(field);
                return Err(refuse(
                    multipart,
                    ApiError::too_large(format!(
                        "file `{file_name}` is larger than the {} limit per file (GEOEXP_SERVE_MAX_UPLOAD)",
                        bytesize::ByteSize::b(limits.max_bytes).display().iec()
                    )),
                )
                .await);
            }
            bytes.extend_from_slice(&chunk);
        }
        uploads.push(Upload {
            field: name,
            file_name,
            bytes: Bytes::from(bytes),
        });
    }
    Ok(uploads)
}

/// Answers `error` to an upload refused before it was read (an unknown model), once its
/// body is read and discarded (see [`refuse`]).
pub async fn refuse_unread(
    multipart: Result<Multipart, MultipartRejection>,
    error: ApiError,
) -> ApiError {
    match multipart {
        Ok(multipart) => refuse(multipart, error).await,
        Err(_) => error,
    }
}

/// Reads and discards the rest of the body (bounded by the server's body limit) before
/// answering `error`: a server that closes a connection with unread data makes the
/// client's system reset it, and a client still sending (or not yet reading) would see a
/// broken connection instead of the message.
async fn refuse(mut multipart: Multipart, error: ApiError) -> ApiError {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
    error
}

fn malformed(e: MultipartError) -> ApiError {
    let status = e.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!(
            "the request is larger than the server accepts: {}",
            e.body_text()
        ))
    } else {
        // A truncated or garbled body is the client's: 400, whatever multer calls it.
        ApiError::bad_request(format!("malformed upload: {}", e.body_text()))
    }
}

/// The heading a cardinal view's file name gives (`0.jpg`, `90.png`, `180`, any
/// extension), if any.
pub fn heading_of(file_name: &str) -> Option<u16> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = base.split_once('.').map_or(base, |(s, _)| s);
    match stem {
        "0" => Some(0),
        "90" => Some(90),
        "180" => Some(180),
        "270" => Some(270),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_come_from_the_file_stem_whatever_the_extension() {
        assert_eq!(heading_of("0.jpg"), Some(0));
        assert_eq!(heading_of("90.PNG"), Some(90));
        assert_eq!(heading_of("180"), Some(180));
        assert_eq!(heading_of("dir/270.jpeg"), Some(270));
        assert_eq!(heading_of("45.jpg"), None);
        assert_eq!(heading_of("north.jpg"), None);
        assert_eq!(heading_of("00.jpg"), None);
    }
}
