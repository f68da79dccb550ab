//! The floor under every route: state, cookies and session, CSRF as extractors a handler cannot
//! forget, JSON and path extractors, rendering, and the one mapping from an error to a response.
//!
//! Every route module imports this kit; it imports no route module.

mod admin;
mod bodies;
mod csrf;
mod error;
mod json;
mod render;
mod session;
mod signed_in;
mod words;

use std::sync::Arc;

use axum::extract::State;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::Latchkey;

pub use admin::{Admin, Principal};
pub use bodies::{accepted, link_info, sso_link_info, Accepted, CodeSent, Done, EmailEntry, LinkInfo, LoginNameBody, SsoLinkInfo};
pub use csrf::{AnonymousForm, CsrfBinding, CsrfForm, CsrfOnly, EnrollingForm, FormRefused, SessionForm};
pub(crate) use csrf::csrf_forms;
pub use error::{error_page, error_page_to, not_found_page, notice_page, ErrorBody};
pub use json::{ApiJson, ApiPath};
pub use render::{render, with_cookie, with_retry_after, MethodChoice};
pub use session::{cookie_value, Client, Current, Enrolling, MaybeSignedIn, PageEnrolling, PageUser, SignedIn};
pub use signed_in::{flow_cookie_name, redirect_with_cookie, sign_in_response, signed_in, signed_in_response, SignInResponse};
pub use words::{describe_client, human_time, method_label, password_hint, role_label, sent_to};

/// What every handler is given: the services, the key CSRF tokens are made with, and the metrics.
pub struct Web {
    pub app: Arc<Latchkey>,
    pub csrf_key: Vec<u8>,
    pub metrics: Option<PrometheusHandle>,
}

pub type WebState = State<Arc<Web>>;
