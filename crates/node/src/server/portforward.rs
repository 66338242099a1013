//! stub
use super::{Context, PodRef, upgrade_required};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;
use std::sync::Arc;
/// stub
pub async fn serve_portforward(
    _ctx: Arc<Context>,
    _pod: PodRef,
    _ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    upgrade_required()
}
