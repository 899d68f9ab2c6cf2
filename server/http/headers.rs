//! Security headers on every answer: a strict CSP (no inline script, no framing), no MIME
//! sniffing, no referrer, and HSTS when the site is served over HTTPS.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The UI's own scripts and styles only; images may be `data:`/`blob:` URLs (previews drawn
/// in the browser).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One year: browsers that saw the site over HTTPS never try plain HTTP again.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

pub fn add<S: Clone + Send + Sync + 'static>(router: Router<S>, https: bool) -> Router<S> {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let mut router = router;
    for (name, value) in fixed {
        router = router.layer(layer(name, value));
    }
    if https {
        router = router.layer(layer(
            header::STRICT_TRANSPORT_SECURITY,
            STRICT_TRANSPORT_SECURITY,
        ));
    }
    router
}

fn layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
