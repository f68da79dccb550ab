//! Production delivery: an HTTP SMS gateway speaking the Twilio Messages REST API,
//! `POST {base_url}/2010-04-01/Accounts/{account_id}/Messages.json` with HTTP Basic auth and a form
//! body `To=…&From=…&Body=…`. Twilio itself, and the gateways that copy its API, answer 201 with
//! the message's JSON; errors come as JSON with a numeric `code`.

use std::time::Duration;

use serde::Deserialize;
use url::{Host, Url};

use super::{check, masked, OutgoingSms, SmsError, SmsGateway};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The API version in Twilio's paths; the only one there is.
const API_VERSION: &str = "2010-04-01";
/// Answers are a few hundred bytes; a gateway (or a proxy's error page) sending more is cut here.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsGatewayConfig {
    /// `https://api.twilio.com`, or another gateway with the same API; a path prefix is kept.
    pub base_url: String,
    /// Twilio's Account SID (`AC…`), the user name of HTTP Basic auth and part of the path.
    pub account_id: String,
    /// The password of HTTP Basic auth.
    pub auth_token: String,
    /// The sender: a number in E.164, a short code or an alphanumeric sender id, as the gateway
    /// account allows.
    pub from: String,
    /// For the whole request, connection included; 10 seconds when absent.
    pub timeout_secs: Option<u64>,
}

// Hand-written so that logging the configuration (at start-up, in a panic) never shows the token.
impl std::fmt::Debug for SmsGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsGatewayConfig")
            .field("base_url", &self.base_url)
            .field("account_id", &self.account_id)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

pub struct HttpSmsGateway {
    client: reqwest::Client,
    messages_url: Url,
    account_id: String,
    auth_token: String,
    from: String,
    host: String,
}

impl std::fmt::Debug for HttpSmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSmsGateway")
            .field("messages_url", &self.messages_url.as_str())
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl HttpSmsGateway {
    /// Checks the configuration without connecting, so a gateway that is down does not stop the
    /// server from starting. The errors name the setting at fault, never the token's value.
    pub fn new(cfg: &SmsGatewayConfig) -> Result<Self, SmsError> {
        let config = |msg: &str| SmsError::Config(msg.to_owned());
        let base = Url::parse(cfg.base_url.trim()).map_err(|_| config("base_url is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config("base_url must start with https:// (or http:// for a gateway on loopback)"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config("base_url must not hold credentials: set account_id and auth_token instead"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config("base_url must not have a query or a fragment"));
        }
        let account_id = cfg.account_id.trim();
        if account_id.is_empty() || !account_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(config("account_id must be letters, digits, '-' or '_' (Twilio: the Account SID, AC…)"));
        }
        let auth_token = cfg.auth_token.trim();
        if auth_token.is_empty() {
            return Err(config("auth_token is empty"));
        }
        let from = cfg.from.trim();
        if from.is_empty() {
            return Err(config("from is empty"));
        }
        let timeout = match cfg.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(0) => return Err(config("timeout_secs must be at least 1")),
            Some(secs) => Duration::from_secs(secs),
        };

        let mut messages_url = base.clone();
        messages_url
            .path_segments_mut()
            .map_err(|()| config("base_url cannot take a path"))?
            .pop_if_empty()
            .extend([API_VERSION, "Accounts", account_id, "Messages.json"]);
        let host = base.host_str().unwrap_or_default().to_owned();
        if base.scheme() == "http" && !is_loopback(base.host()) {
            tracing::warn!(
                host = %host,
                "the SMS gateway's base_url is http:// for a host that is not loopback: the auth token \
                 and the codes would cross the network in clear text"
            );
        }

        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would turn the POST into a GET, and is never how a gateway answers.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| config("could not set up the HTTP client"))?;
        Ok(Self {
            client,
            messages_url,
            account_id: account_id.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
            host,
        })
    }

    /// Logs the failure with what helps the operator (status, the gateway's error code, the cause of
    /// a connection failure) and nothing that could hold the code or the token.
    fn failure(&self, to: &str, error: SmsError, cause: Option<&reqwest::Error>) -> SmsError {
        // The chain below reqwest's own message (which names the URL): "tcp connect error:
        // Connection refused" and the like.
        let mut causes = Vec::new();
        let mut source = cause.and_then(|e| std::error::Error::source(e));
        while let Some(e) = source {
            causes.push(e.to_string());
            source = e.source();
        }
        let hint = match &error {
            SmsError::Rejected { status: 401 | 403, .. } => "check account_id and auth_token",
            SmsError::Rejected { status: 404, .. } => "check base_url and account_id",
            _ => "",
        };
        tracing::warn!(
            host = %self.host,
            to = %masked(to),
            error = %error,
            cause = %causes.join(": "),
            hint,
            "SMS delivery failed"
        );
        error
    }
}

#[async_trait::async_trait]
impl SmsGateway for HttpSmsGateway {
    async fn send(&self, sms: &OutgoingSms, _at: time::OffsetDateTime) -> Result<(), SmsError> {
        let to = check(sms)?;
        let form = [("To", to.as_str()), ("From", self.from.as_str()), ("Body", sms.body.as_str())];
        // Never log the body here (it holds the code) nor the request (its headers hold the token).
        let sent = self
            .client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_id, Some(&self.auth_token))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let error = if e.is_timeout() { SmsError::Timeout } else { SmsError::Connection };
                return Err(self.failure(to.as_str(), error, Some(&e)));
            }
        };
        let status = response.status();
        let answer = read_json(response).await;
        if status.is_success() {
            let sid = answer.as_ref().and_then(|a| a.get("sid")).and_then(|s| s.as_str()).unwrap_or_default();
            tracing::debug!(host = %self.host, to = %masked(to.as_str()), sid, "text message handed to the SMS gateway");
            return Ok(());
        }
        let status = status.as_u16();
        // Twilio answers 429 when the account sends faster than it allows: later may work.
        let error = if status >= 500 || status == 429 {
            SmsError::Transient { status }
        } else {
            // Only the numeric code is kept: the message text may quote the number or the body.
            let code = answer.as_ref().and_then(|a| a.get("code")).and_then(|c| c.as_u64()).and_then(|c| u32::try_from(c).ok());
            SmsError::Rejected { status, code }
        };
        Err(self.failure(to.as_str(), error, None))
    }
}

/// The answer as JSON, if it is JSON and not too long; `None` otherwise (the status alone decides).
async fn read_json(mut response: reqwest::Response) -> Option<serde_json::Value> {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).ok()
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmsGatewayConfig {
        SmsGatewayConfig {
            base_url: "https://api.twilio.example/".into(),
            account_id: "AC0123456789abcdef0123456789abcdef".into(),
            auth_token: "tok-hunter2-secret".into(),
            from: "+15550100000".into(),
            timeout_secs: None,
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("api.twilio.example"), "{shown}");
        let gateway = HttpSmsGateway::new(&config()).unwrap();
        let shown = format!("{gateway:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn config_deserializes_and_refuses_unknown_keys() {
        let cfg: SmsGatewayConfig =
            serde_json::from_str(r#"{"base_url":"https://x.test","account_id":"AC1","auth_token":"t","from":"+15550100000"}"#)
                .unwrap();
        assert!(cfg.timeout_secs.is_none());
        let typo = r#"{"base_url":"https://x.test","account_id":"AC1","auth_token":"t","from":"+1","timeout":3}"#;
        assert!(serde_json::from_str::<SmsGatewayConfig>(typo).is_err());
    }

    #[test]
    fn the_messages_url_is_built_from_the_base_with_or_without_a_trailing_slash() {
        for base in ["https://api.twilio.example", "https://api.twilio.example/"] {
            let gateway = HttpSmsGateway::new(&SmsGatewayConfig { base_url: base.into(), ..config() }).unwrap();
            assert_eq!(
                gateway.messages_url.as_str(),
                "https://api.twilio.example/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
            );
        }
        let prefixed = SmsGatewayConfig { base_url: "http://127.0.0.1:8080/sms/".into(), ..config() };
        let gateway = HttpSmsGateway::new(&prefixed).unwrap();
        assert_eq!(
            gateway.messages_url.as_str(),
            "http://127.0.0.1:8080/sms/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
        );
    }

    #[test]
    fn bad_settings_are_refused_without_echoing_the_token() {
        let cases = [
            SmsGatewayConfig { base_url: "ftp://x.test".into(), ..config() },
            SmsGatewayConfig { base_url: "api.twilio.example".into(), ..config() },
            SmsGatewayConfig { base_url: "https://AC1:tok-hunter2-secret@x.test".into(), ..config() },
            SmsGatewayConfig { base_url: "https://x.test/?a=b".into(), ..config() },
            SmsGatewayConfig { account_id: "".into(), ..config() },
            SmsGatewayConfig { account_id: "AC1/../x".into(), ..config() },
            SmsGatewayConfig { auth_token: " ".into(), ..config() },
            SmsGatewayConfig { from: "".into(), ..config() },
            SmsGatewayConfig { timeout_secs: Some(0), ..config() },
        ];
        for cfg in cases {
            let err = HttpSmsGateway::new(&cfg).unwrap_err();
            assert!(matches!(err, SmsError::Config(_)), "{cfg:?}: {err:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for url in ["http://localhost:1", "http://127.0.0.1", "http://[::1]:8080"] {
            assert!(is_loopback(Url::parse(url).unwrap().host()), "{url}");
        }
        assert!(!is_loopback(Url::parse("http://sms.example.com").unwrap().host()));
        assert!(!is_loopback(Url::parse("http://10.0.0.1").unwrap().host()));
    }
}
