//! Join token verification: each rejection has its own code, answered before the upgrade.

use crate::support::*;
use base64::Engine;
use haven::auth::join_token::{claims_for, TokenRole};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

async fn refused(app: &TestApp, token: &str) -> (u16, String) {
    let (status, body) = Client::connect(app.addr, token).await.err().expect("token must be refused");
    (status, body["code"].as_str().unwrap_or_default().to_string())
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_own_code() {
    let app = spawn_app().await;
    let good = claims_for(ALPHA, "open", "m1", TokenRole::Member, 600);

    // Signed with the wrong secret.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx"),
    )
    .unwrap();
    assert_eq!(refused(&app, &forged).await, (401, "token_bad_signature".into()));

    // Expired beyond the leeway.
    let mut c = good.clone();
    c.exp = jsonwebtoken::get_current_timestamp() - 3600;
    c.nbf = None;
    assert_eq!(refused(&app, &sign_hs(ALPHA, &c)).await, (401, "token_expired".into()));

    // Not valid yet.
    let mut c = good.clone();
    c.nbf = Some(jsonwebtoken::get_current_timestamp() + 3600);
    assert_eq!(refused(&app, &sign_hs(ALPHA, &c)).await, (401, "token_not_yet_valid".into()));

    // For someone else.
    let mut c = good.clone();
    c.aud = "zoom".into();
    assert_eq!(refused(&app, &sign_hs(ALPHA, &c)).await, (401, "token_wrong_audience".into()));

    // Unknown program.
    let mut c = good.clone();
    c.iss = "prog-unknown".into();
    assert_eq!(refused(&app, &sign_hs(ALPHA, &c)).await, (401, "token_unknown_program".into()));

    // Beta's member in alpha's own (unshared) meeting, by alpha's id and by its full name: as for
    // a meeting nobody has.
    let c = claims_for(BETA, "open", "b1", TokenRole::Member, 600);
    assert_eq!(refused(&app, &sign_hs(BETA, &c)).await, (404, "meeting_not_found".into()));
    let c = claims_for(BETA, &format!("{ALPHA}/open"), "b1", TokenRole::Member, 600);
    assert_eq!(refused(&app, &sign_hs(BETA, &c)).await, (404, "meeting_not_found".into()));

    // alg: none.
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&serde_json::to_value(&good).unwrap())
    );
    assert_eq!(refused(&app, &none).await, (401, "token_alg_none".into()));

    // HS/RS confusion: an HS256 token "signed" with the RS256 program's public key.
    let c = claims_for(RS, "open", "r1", TokenRole::Member, 600);
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(fixture("rsa_public.pem").as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&app, &confused).await, (401, "token_wrong_algorithm".into()));

    // Missing and malformed.
    assert_eq!(refused(&app, "").await, (401, "token_missing".into()));
    assert_eq!(refused(&app, "abc.def").await, (401, "token_malformed".into()));

    // A token without `sub`.
    let no_sub = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"iss": ALPHA, "aud": "haven", "meeting": "open", "role": "member", "exp": jsonwebtoken::get_current_timestamp() + 60}),
        &EncodingKey::from_secret(ALPHA_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&app, &no_sub).await, (401, "token_missing_claim".into()));
}

#[tokio::test]
async fn asymmetric_programs_verify_with_their_public_keys() {
    let app = spawn_app().await;
    app.create_meeting(
        ED_KEY,
        serde_json::json!({"id": "ed-meeting", "title": "Ed", "settings": {"waiting_room": false}}),
    )
    .await;
    app.create_meeting(
        RS_KEY,
        serde_json::json!({"id": "rs-meeting", "title": "Rs", "settings": {"waiting_room": false}}),
    )
    .await;
    let ed = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims_for(ED, "ed-meeting", "e1", TokenRole::Member, 600),
        &EncodingKey::from_ed_pem(fixture("ed25519_private.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    let mut c = app.connect(&ed).await;
    c.send(serde_json::json!({"type": "join"})).await;
    assert_eq!(c.recv().await["type"], "welcome");
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims_for(RS, "rs-meeting", "r1", TokenRole::Member, 600),
        &EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    let mut c = app.connect(&rs).await;
    c.send(serde_json::json!({"type": "join"})).await;
    assert_eq!(c.recv().await["type"], "welcome");
    // An RS256 token for the EdDSA program is refused by algorithm, before any signature check.
    let wrong = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims_for(ED, "ed-meeting", "e2", TokenRole::Member, 600),
        &EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&app, &wrong).await, (401, "token_wrong_algorithm".into()));
}

#[tokio::test]
async fn the_token_can_come_in_the_authorization_header() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app().await;
    let mut req = format!("ws://{}/v1/signal", app.addr).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(ALPHA, "open", "m1", TokenRole::Member)).parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    drop(ws);
}
