//! The HTTP SMS gateway against a Twilio-style gateway on loopback that records the calls: the
//! request a real gateway would get, and how each kind of failure comes back.

#[path = "support/sms_gateway.rs"]
mod sms_gateway;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_server::sms::{
    message_for_code, HttpSmsGateway, OutgoingSms, SmsError, SmsGateway, SmsGatewayConfig, SmsPurpose,
};
use sms_gateway::{RecordingGateway, ACCOUNT_ID, AUTH_TOKEN, FROM};

const CODE: &str = "482913";

fn sign_in_text() -> OutgoingSms {
    // `&`, `+`, `=` and a non-ASCII letter in the company name: the form encoding must carry them.
    OutgoingSms { to: "+15550104477".into(), body: message_for_code("Müller & Söhne +=Phones", CODE, SmsPurpose::SignIn) }
}

fn gateway_for(config: &SmsGatewayConfig) -> HttpSmsGateway {
    HttpSmsGateway::new(config).expect("HTTP SMS gateway")
}

/// Neither the text (which holds the code) nor the token may show in an error, however printed.
fn assert_no_secrets(err: &SmsError, sms: &OutgoingSms) {
    let shown = format!("{err} | {err:?} | {:?}", std::error::Error::source(err).map(|s| s.to_string()));
    assert!(!shown.contains(CODE), "the code leaked: {shown}");
    assert!(!shown.contains(&sms.body), "the body leaked: {shown}");
    assert!(!shown.contains(AUTH_TOKEN) && !shown.contains("wrong-token"), "the token leaked: {shown}");
}

#[tokio::test]
async fn sends_the_form_fields_with_basic_auth_to_the_messages_endpoint() {
    let gateway = RecordingGateway::start().await;
    let sms = sign_in_text();
    gateway_for(&gateway.config()).send(&sms, time::OffsetDateTime::now_utc()).await.expect("sent");

    let calls = gateway.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.status, 201);
    assert_eq!(call.account_id, ACCOUNT_ID);
    assert_eq!(call.auth_user, ACCOUNT_ID);
    assert!(call.authorized, "Basic auth with the account id and token");
    assert!(call.content_type.starts_with("application/x-www-form-urlencoded"), "{}", call.content_type);
    assert_eq!(call.to, "+15550104477");
    assert_eq!(call.from, FROM);
    assert_eq!(call.body, sms.body);
    assert!(call.body.starts_with("482913 is your Müller & Söhne +=Phones sign-in code."), "{}", call.body);
    assert_eq!(call.code().as_deref(), Some(CODE));
}

#[tokio::test]
async fn the_number_is_sent_in_e164_and_a_trailing_slash_in_base_url_is_fine() {
    let gateway = RecordingGateway::start().await;
    let config = SmsGatewayConfig { base_url: format!("{}/", gateway.base_url), ..gateway.config() };
    let sms = OutgoingSms { to: "+44 20 7946 0958".into(), body: message_for_code("Org", CODE, SmsPurpose::VerifyNumber) };
    gateway_for(&config).send(&sms, time::OffsetDateTime::now_utc()).await.expect("sent");
    let calls = gateway.delivered().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].to, "+442079460958");
}

#[tokio::test]
async fn a_400_is_rejected_with_the_gateways_code_and_not_retried() {
    let gateway = RecordingGateway::start().await.with_status(400);
    let sms = sign_in_text();
    let err = gateway_for(&gateway.config()).send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Rejected { status: 400, code: Some(21211) }), "{err:?}");
    assert!(!err.is_transient());
    assert_no_secrets(&err, &sms);
    assert_eq!(gateway.calls().await.len(), 1, "one call, no retry inside the gateway");
}

#[tokio::test]
async fn a_503_is_transient_and_the_next_send_goes_through() {
    let gateway = RecordingGateway::start().await;
    gateway.fail_next(503);
    let sms = sign_in_text();
    let http = gateway_for(&gateway.config());
    let err = http.send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Transient { status: 503 }), "{err:?}");
    assert!(err.is_transient());
    assert_no_secrets(&err, &sms);

    http.send(&sms, time::OffsetDateTime::now_utc()).await.expect("the gateway is back");
    let calls = gateway.calls().await;
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![503, 201]);
    assert_eq!(gateway.delivered().await.len(), 1);
}

#[tokio::test]
async fn too_many_requests_is_transient() {
    let gateway = RecordingGateway::start().await.with_status(429);
    let err = gateway_for(&gateway.config()).send(&sign_in_text(), time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Transient { status: 429 }), "{err:?}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_as_rejected() {
    let gateway = RecordingGateway::start().await;
    let config = SmsGatewayConfig { auth_token: "wrong-token".into(), ..gateway.config() };
    let sms = sign_in_text();
    let err = gateway_for(&config).send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Rejected { status: 401, code: Some(20003) }), "{err:?}");
    assert!(!err.is_transient());
    assert_no_secrets(&err, &sms);
    let calls = gateway.calls().await;
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].authorized && calls[0].status == 401);
    assert!(gateway.delivered().await.is_empty());
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connection_error() {
    // A port on which nothing listens.
    let port = latchkey_store::testing::free_port();
    let config = SmsGatewayConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        account_id: ACCOUNT_ID.into(),
        auth_token: AUTH_TOKEN.into(),
        from: FROM.into(),
        timeout_secs: Some(2),
    };
    let sms = sign_in_text();
    let err = gateway_for(&config).send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Connection), "{err:?}");
    assert!(err.is_transient());
    assert_no_secrets(&err, &sms);
}

#[tokio::test]
async fn a_gateway_slower_than_the_timeout_is_a_transient_timeout() {
    let gateway = RecordingGateway::start().await.with_delay(Duration::from_secs(3));
    let config = SmsGatewayConfig { timeout_secs: Some(1), ..gateway.config() };
    let sms = sign_in_text();
    let started = std::time::Instant::now();
    let err = gateway_for(&config).send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::Timeout), "{err:?}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_no_secrets(&err, &sms);
}

#[tokio::test]
async fn a_number_that_is_not_e164_never_reaches_the_gateway() {
    let gateway = RecordingGateway::start().await;
    let sms = OutgoingSms { to: "555 010 4477".into(), body: message_for_code("Org", CODE, SmsPurpose::SignIn) };
    let err = gateway_for(&gateway.config()).send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert!(matches!(err, SmsError::InvalidNumber), "{err:?}");
    assert_no_secrets(&err, &sms);
    assert!(gateway.calls().await.is_empty());
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_hold_the_code_the_body_or_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gateway = RecordingGateway::start().await;
    let sms = sign_in_text();
    let http = gateway_for(&gateway.config());
    http.send(&sms, time::OffsetDateTime::now_utc()).await.expect("sent");
    gateway.fail_next(400);
    http.send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    let wrong = gateway_for(&SmsGatewayConfig { auth_token: "wrong-token".into(), ..gateway.config() });
    wrong.send(&sms, time::OffsetDateTime::now_utc()).await.unwrap_err();
    assert_eq!(gateway.calls().await.len(), 3);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("SMS delivery failed") && log.contains("•••• 4477"), "{log}");
    assert!(log.contains("check account_id and auth_token"), "{log}");
    for secret in [CODE, AUTH_TOKEN, "wrong-token", "+15550104477", "Söhne"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}
