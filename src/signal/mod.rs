//! `GET /v1/signal`: authentication before the upgrade, then one connection task pair.
//!
//! Failed authentication is answered before the upgrade with an HTTP error and a JSON body, so a
//! browser never opens a socket it cannot use. A full, locked or ended meeting is refused the same way.

pub mod connection;
pub mod guard;
pub mod log_budget;

use crate::api::error::ApiError;
use crate::app::AppState;
use crate::auth::join_token;
use crate::cluster::proxy;
use crate::meeting::actor::resume_token_meeting;
use crate::meeting::ActorMsg;
use crate::protocol::{ErrorCode, ProtocolError};
use crate::room::MemberKey;
use crate::store::MeetingRow;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use connection::Credential;
use guard::{AddressRefusal, UnjoinedPermit};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::oneshot;

/// Query parameters of the upgrade request. Browsers cannot set headers on a WebSocket, so the
/// token may come here; it is never logged (the request span records the path only).
#[derive(Debug, Deserialize)]
pub struct SignalQuery {
    token: Option<String>,
    /// `certificate=1`: after the meeting's end, a connection only for `certificate_request`.
    #[serde(default)]
    certificate: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// A client's socket, served here or passed on to the meeting's owner: small buffers, the frame cap.
fn sized(ws: WebSocketUpgrade, limits: &crate::config::Limits) -> WebSocketUpgrade {
    ws.read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        // No cap below the largest frame the server itself sends: a `welcome` grows with the
        // meeting (about 130 bytes a participant), and a frame the buffer cannot take fails the
        // connection (it cut every joiner past ~870 in a meeting). Memory stays bounded by the
        // outbound queue (frames) and the batch the writer feeds per flush.
        .max_write_buffer_size(usize::MAX)
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
}

/// The upgrade handler.
pub async fn upgrade(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<SignalQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let certificate = q.certificate.as_deref().is_some_and(|v| v == "1" || v == "true");
    let token = q.token.as_deref().or(bearer(&headers));
    let mut client = peer.ip();
    if let Some(cluster) = app.cluster.clone() {
        // A node passing a client on vouches for the client's address.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let from_node = header(proxy::NODE_HEADER).is_some_and(|v| cluster.is_node(v));
        if from_node {
            client = header(proxy::CLIENT_HEADER).and_then(|v| v.parse().ok()).unwrap_or(client);
        }
        let place = from_node && header(proxy::PLACE_HEADER) == Some("1");
        match route(&app, &cluster, token, from_node, place).await {
            Ok(Route::Here) => {}
            Ok(Route::Forward { url, place }) => {
                // The address limits hold on the node the client reached.
                let permit = match app.addresses.admit(client, std::time::Instant::now()) {
                    Ok(p) => p,
                    Err(r) => return address_refusal(r).into_response(),
                };
                let f = proxy::Forward {
                    owner_url: &url,
                    token: token.unwrap_or_default(),
                    certificate,
                    client,
                    place,
                    credential: cluster.node_credential(),
                    max_frame_bytes: app.config.limits.max_frame_bytes,
                    write_buffer_bytes: app.config.limits.ws_write_buffer_bytes,
                    read_buffer_bytes: app.config.limits.ws_read_buffer_bytes,
                };
                return match proxy::connect(f).await {
                    Ok(upstream) => {
                        drop(permit);
                        let metrics = app.metrics.clone();
                        sized(ws, &app.config.limits).on_upgrade(move |socket| proxy::pipe(socket, upstream, metrics))
                    }
                    Err(refusal) => refusal,
                };
            }
            Err(e) => return e.into_response(),
        }
    }
    match authorize(&app, client, token, certificate).await {
        Ok((cred, permit)) => {
            sized(ws, &app.config.limits).on_upgrade(move |socket| connection::run(socket, app, cred, permit))
        }
        Err(e) => {
            // Counted in the metrics by the API's error layer, like every API error. The client's
            // to fix or retry: not a server fault, so not a warning.
            tracing::debug!(status = e.status.as_u16(), code = e.code, "upgrade refused");
            e.into_response()
        }
    }
}

fn address_refusal(r: AddressRefusal) -> ApiError {
    match r {
        AddressRefusal::TooManyUpgrades => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_upgrades",
            "too many connection attempts from your address; wait a moment",
        ),
        AddressRefusal::TooManyUnjoined => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pending",
            "too many connections from your address are still joining; wait a moment",
        ),
    }
}

async fn authorize(
    app: &AppState,
    client: IpAddr,
    token: Option<&str>,
    certificate: bool,
) -> Result<(Credential, Option<UnjoinedPermit>), ApiError> {
    // Every attempt counts against its address, whether its token is good or not.
    let permit = app.addresses.admit(client, std::time::Instant::now()).map_err(address_refusal)?;
    check(app, token, certificate, true, &mut Findings::default()).await.map(|c| (c, permit))
}

/// Cluster mode: where a signaling socket is served.
enum Route {
    /// This node owns the meeting (or nothing here can be routed: the checks refuse it here).
    Here,
    /// Pass it on to the node at `url`; `place`: that node should start the meeting.
    Forward { url: String, place: bool },
}

/// The key of the meeting a token leads to: a resume token's meeting, or a join token's (its
/// program's name for it, or a series link's open occurrence), with the meeting's row when
/// finding it read one (so routing does not read it again). None when the token does not verify
/// or names nothing: the local checks refuse it with their usual answer.
async fn token_meeting(app: &AppState, token: Option<&str>) -> Option<(String, Option<MeetingRow>)> {
    let token = token.filter(|t| !t.is_empty())?;
    if token.starts_with("hvr.") {
        return resume_token_meeting(token).map(|m| (m, None));
    }
    let (program, c) = join_token::verify(&app.programs, token, app.config.limits.token_leeway_seconds).ok()?;
    let row = match c.meeting.strip_prefix(crate::api::series::SERIES_CLAIM_PREFIX) {
        // A series link goes where its open occurrence is (no open one: the local checks refuse).
        Some(series) => crate::api::series::resolve_link(app, &program.id, series).await.ok()?,
        // The meeting as the token's program names it, to its key.
        None => app.rooms.named(&program.id, &c.meeting).await.ok().flatten()?,
    };
    Some((row.id.clone(), Some(row)))
}

/// Cluster mode: the node that owns the live meeting a token leads to, when that is another node
/// (the join-check asks it, since only the live room knows its lock, its seats and a resume
/// token's seat). None when the meeting is here, has no owner (nobody is in it: the stored
/// meeting says everything) or the token leads nowhere.
pub async fn owner_elsewhere(app: &AppState, token: &str) -> Option<String> {
    let cluster = app.cluster.as_ref()?;
    let (meeting, _) = token_meeting(app, Some(token)).await?;
    if app.rooms.get(&meeting).is_some() && cluster.held(&meeting).is_some() {
        return None;
    }
    match cluster.owner(&meeting, &app.store, false).await {
        Ok(Some(crate::cluster::Owner::Elsewhere { url, .. })) => Some(url),
        _ => None,
    }
}

/// Cluster mode: finds the meeting's owner, or places a meeting that has none (on the least
/// loaded node; taking the lease when that is this node). A token that does not verify is left
/// to the local checks, which refuse it with their usual answer. A socket another node passed on
/// (`from_node`) is never passed on again: a lease that moved meanwhile answers `unavailable`
/// and the client retries.
async fn route(
    app: &AppState,
    cluster: &crate::cluster::Cluster,
    token: Option<&str>,
    from_node: bool,
    place: bool,
) -> Result<Route, ApiError> {
    use crate::cluster::Owner;
    let Some((meeting, row)) = token_meeting(app, token).await else { return Ok(Route::Here) };
    if app.rooms.get(&meeting).is_some() && cluster.held(&meeting).is_some() {
        return Ok(Route::Here);
    }
    // An unknown, ended or deleted meeting is refused here, as on a single node. A join token's
    // row was just read from the database when the meeting is not live here (a live room's copy
    // may predate its end); else it is read now.
    let live = match row {
        Some(r) if app.rooms.get(&meeting).is_none() => Some(r),
        _ => app.store.meeting(&meeting).await.map_err(|e| ApiError::internal(&e))?,
    };
    if live.is_none_or(|m| m.ended_at.is_some()) || app.journal.is_ending(&meeting) {
        return Ok(Route::Here);
    }
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the meeting is moving to another server; try again in a moment",
        )
    };
    // Redis away, or no node taking meetings: not a move, so the message says what it is.
    let cluster_error = |e: crate::cluster::ClusterError| {
        tracing::warn!(error = %e, "cluster: cannot route a connection");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the servers cannot find or start this meeting right now; try again in a moment",
        )
    };
    let owner = cluster.owner(&meeting, &app.store, from_node && place).await.map_err(cluster_error)?;
    let owner = match owner {
        Some(o) => Some(o),
        None if from_node => return Err(unavailable()),
        None => {
            let target = cluster.place().await.map_err(cluster_error)?;
            if target.id != cluster.node {
                return Ok(Route::Forward { url: target.url, place: true });
            }
            cluster.owner(&meeting, &app.store, true).await.map_err(cluster_error)?
        }
    };
    match owner {
        Some(Owner::Here { .. }) => Ok(Route::Here),
        Some(Owner::Elsewhere { url, .. }) if !from_node => Ok(Route::Forward { url, place: false }),
        _ => Err(unavailable()),
    }
}
/// What the checks learnt about a join, whatever their verdict (the join-check page shows it).
#[derive(Debug, Default)]
pub struct Findings {
    /// The token's program, once its signature verified.
    pub program: Option<String>,
    pub meeting_title: Option<String>,
    pub role: Option<crate::protocol::Role>,
}

/// `POST /v1/join-check`: the upgrade's checks, without a socket or a connection slot.
pub async fn join_check(app: &AppState, token: &str) -> (Findings, Result<(), ApiError>) {
    let mut found = Findings::default();
    let verdict = check(app, Some(token), false, false, &mut found).await.map(|_| ());
    (found, verdict)
}

/// The checks the upgrade runs, in its order; `found` collects what is known along the way.
/// `spawn`: start the meeting's room to ask it (the upgrade joins it next; the join-check does not).
async fn check(
    app: &AppState,
    token: Option<&str>,
    certificate: bool,
    spawn: bool,
    found: &mut Findings,
) -> Result<Credential, ApiError> {
    if app.metrics.connections.get() >= app.config.limits.max_connections as i64 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the server is at capacity; try again shortly",
        ));
    }
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is restarting; try again shortly",
        ));
    }
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| token_error(join_token::TokenError::Missing))?;
    if token.starts_with("hvr.") {
        // A resume token: its MAC proves this server minted it (a forged one is refused here,
        // before it holds a slot); the live room decides whether it is still current.
        let invalid = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidResumeToken.as_str(),
                "that resume token is no longer valid; join again with your join link",
            )
        };
        let meeting = resume_token_meeting(token).ok_or_else(invalid)?;
        if app.rooms.get(&meeting).is_none() && spawn {
            // Cluster mode: this node took the meeting over; its room carries on from the snapshot.
            if app.cluster.as_ref().is_some_and(|c| c.held(&meeting).is_some()) {
                if let Some(row) = app.store.meeting(&meeting).await.map_err(|e| ApiError::internal(&e))? {
                    if row.ended_at.is_none() {
                        app.rooms.get_or_spawn(&row);
                    }
                }
            }
        }
        return match app.rooms.get(&meeting) {
            Some(_) => Ok(Credential::Resume { meeting }),
            None => Err(invalid()),
        };
    }
    let (program, claims) = match join_token::verify(&app.programs, token, app.config.limits.token_leeway_seconds) {
        Ok(v) => v,
        Err(e) => {
            if matches!(e, join_token::TokenError::Expired | join_token::TokenError::NotYetValid) {
                // Only the times failed: the signature held, so the claims say who and where.
                if let Some(c) = claims_of_verified(token) {
                    let m = app.rooms.named(&c.iss, &c.meeting).await.ok().flatten();
                    found.meeting_title = m.map(|m| m.title);
                    found.role = Some(c.role.into());
                    found.program = Some(c.iss);
                }
            }
            return Err(token_error(e));
        }
    };
    found.program = Some(program.id.clone());
    found.role = Some(claims.role.into());
    // A series link (`meeting: "series:<id>"`) joins whichever occurrence is open now.
    let meeting = match claims.meeting.strip_prefix(crate::api::series::SERIES_CLAIM_PREFIX) {
        Some(series) => match crate::api::series::resolve_link(app, &program.id, series).await {
            Ok(occurrence) => Some(occurrence),
            Err((refusal, title)) => {
                found.meeting_title = title;
                return Err(refusal);
            }
        },
        // Meeting ids are per program: `<id>` is the token's program's own meeting, `<owner>/<id>`
        // one shared with it. Whatever else the claim names (another program's meeting that is
        // not shared with this one, a deleted one, nothing) is one answer, so a token never tells
        // whether another program uses an id. A live meeting is authorised from what its actor
        // holds, so joins never wait on the database.
        None => app.rooms.named(&program.id, &claims.meeting).await.map_err(|e| ApiError::internal(&e))?,
    };
    let Some(meeting) = meeting else {
        found.role = None;
        return Err(ApiError::new(StatusCode::NOT_FOUND, "meeting_not_found", "no such meeting"));
    };
    found.meeting_title = Some(meeting.title.clone());
    if claims.role == join_token::TokenRole::Facilitator && !meeting.admits_facilitator(&program.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role_not_shared",
            "this meeting is shared with your program for members only; a facilitator of its own program runs it",
        ));
    }
    let member = MemberKey { program: program.id.clone(), member_ref: claims.sub };
    // An end still in the journal is an end (the database hears of it once the journal drains).
    if meeting.ended_at.is_some() || app.journal.is_ending(&meeting.id) {
        if certificate {
            return Ok(Credential::Certificate { meeting: meeting.id, member });
        }
        return Err(refusal_response(ProtocolError::meeting_ended()));
    }
    let role = claims.role.into();
    if !spawn && app.rooms.get(&meeting.id).is_none() {
        // No live room: empty and unlocked, so only what a new room would check can refuse (the
        // join-check must not start a room, which would show the meeting as live): a full
        // journal, a ban (stored or still journalled).
        if app.journal.is_full() {
            return Err(refusal_response(ProtocolError::storage_backlog()));
        }
        let bans = app.store.bans(&meeting.id).await.map_err(|e| ApiError::internal(&e))?;
        if bans.contains(&member) || app.journal.pending_bans(&meeting.id).contains(&member) {
            return Err(refusal_response(ProtocolError::banned()));
        }
        return Ok(Credential::Join { meeting: Box::new(meeting), member, role });
    }
    // Ask the meeting whether it would take this member now (capacity, lock, ban).
    for _ in 0..2 {
        let handle = app.rooms.get_or_spawn(&meeting);
        let (reply, rx) = oneshot::channel();
        if handle.tx.send(ActorMsg::Precheck { member: member.clone(), role, reply }).await.is_err() {
            continue; // the actor stopped just now; a fresh one is spawned on the next turn
        }
        match rx.await {
            Ok(None) => return Ok(Credential::Join { meeting: Box::new(meeting), member, role }),
            // The room has ended but the store has not recorded it yet: a certificate
            // connection must not depend on that race.
            Ok(Some(refusal)) if certificate && refusal.code == ErrorCode::MeetingEnded => {
                return Ok(Credential::Certificate { meeting: meeting.id, member });
            }
            Ok(Some(refusal)) => return Err(refusal_response(refusal)),
            Err(_) => continue,
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the meeting is restarting; try again"))
}

/// A meeting's refusal of a join, as the upgrade (and the join-check) answer it.
fn refusal_response(refusal: ProtocolError) -> ApiError {
    let status = match refusal.code {
        ErrorCode::Banned => StatusCode::FORBIDDEN,
        ErrorCode::MeetingEnded => StatusCode::GONE,
        ErrorCode::StorageBacklog => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, refusal.code.as_str(), refusal.message)
}

/// The claims of a token whose signature `join_token::verify` has already checked.
fn claims_of_verified(token: &str) -> Option<join_token::JoinClaims> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn token_error(e: join_token::TokenError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
}
