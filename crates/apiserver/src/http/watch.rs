//! The watch handler: the registry's event lines, sent as a chunked body as they come;
//! Tables rendered one row per event when the client asked for them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::json;

use super::negotiate::Representation;
use super::resources::Request;
use super::table;
use crate::api::ApiError;
use crate::registry::{WatchFormat, WatchOptions};

pub async fn watch(request: &Request<'_>) -> Result<Response, ApiError> {
    let format = match request.representation()? {
        // As kube-apiserver does, the first event's Table carries the column definitions
        // and the later ones leave them out.
        Representation::Table(form) => {
            let first = AtomicBool::new(true);
            WatchFormat::Rendered(Arc::new(move |resource, object| {
                let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let with_columns = first.swap(false, Ordering::Relaxed);
                table::table(resource, form, &[object], metadata, with_columns)
            }))
        }
        _ => WatchFormat::Json,
    };
    let query = request.query;
    let options = WatchOptions {
        label_selector: query.get("labelSelector").map(str::to_owned),
        field_selector: query.get("fieldSelector").map(str::to_owned),
        resource_version: query.get("resourceVersion").map(str::to_owned),
        resource_version_match: query.get("resourceVersionMatch").map(str::to_owned),
        send_initial_events: query.flag("sendInitialEvents")?,
        allow_bookmarks: query.flag("allowWatchBookmarks")?,
        timeout: query.number("timeoutSeconds")?.map(Duration::from_secs),
    };
    let slot = request
        .server
        .watches
        .acquire(request.identity, "watches")?;
    request
        .server
        .watch_starts
        .take(request.identity, "watches")?;
    let events = request
        .server
        .registry()
        .watch(request.target, &options, format)
        .await?;
    // The user's watch slot is held for as long as the stream is.
    let stream = events.map(move |chunk| {
        let _held = &slot;
        Ok::<_, Infallible>(chunk)
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}
