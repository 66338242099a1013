//! GET of one object (and of its `status` subresource, which is the same object).

use super::Call;
use crate::error::ApiResult;
use axum::http::StatusCode;
use axum::response::Response;

/// Reads one object.
pub async fn get(call: &Call) -> ApiResult<Response> {
    let obj = call
        .objects()
        .get(call.target.resource, call.ns(), call.name()?)
        .await?;
    Ok(call.reply(StatusCode::OK, &obj))
}
