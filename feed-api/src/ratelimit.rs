//! Rate limits: writes per user and per client address, login attempts per
//! address and per handle. Over a limit, a request gets 429 with
//! `Retry-After` and is counted in `fanout_rate_limited_total{scope}`.
//!
//! Limits are per API replica (in memory, GCRA via `governor`): N replicas
//! admit up to N times a limit. That bounds abuse, which is the aim, without
//! a round trip to a shared store on every write.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The window of the per-handle login limit: attempts beyond it wait for
/// the oldest to age out of a quarter of an hour.
const LOGIN_HANDLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The limiters, each off when its setting is 0.
pub struct Limits {
    user_writes: Option<DefaultKeyedRateLimiter<Uuid>>,
    address_writes: Option<DefaultKeyedRateLimiter<IpAddr>>,
    address_logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    handle_logins: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

fn per_minute<K: std::hash::Hash + Eq + Clone>(n: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(n).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let handle_logins = NonZeroU32::new(config.login_attempts_per_handle).map(|n| {
            let quota = Quota::with_period(LOGIN_HANDLE_WINDOW / n.get())
                .expect("a non-zero period")
                .allow_burst(n);
            DefaultKeyedRateLimiter::keyed(quota)
        });
        Limits {
            user_writes: per_minute(config.rate_limit_user_per_min),
            address_writes: per_minute(config.rate_limit_address_per_min),
            address_logins: per_minute(config.login_attempts_per_address_per_min),
            handle_logins,
            clock: DefaultClock::default(),
        }
    }

    /// Forgets keys whose limits have fully recovered, so memory follows the
    /// number of recent clients, not of all clients ever seen.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.user_writes {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.address_writes, &self.address_logins]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.handle_logins {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
        what: &str,
    ) -> Result<(), ApiError> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::TooManyRequests {
                detail: format!("too many {what}; retry later"),
                // Whole seconds, rounded up: never an invitation to retry early.
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Counts a login attempt for a handle; refuses once there were too many.
    pub fn login_attempt(&self, handle: &str) -> Result<(), ApiError> {
        self.check(
            &self.handle_logins,
            &handle.to_owned(),
            "login attempts for this handle",
        )
    }
}

/// The client's address: the peer's, or, behind `FANOUT_TRUSTED_PROXY_HOPS`
/// proxies, the one the outermost trusted proxy saw (counted from the right
/// of `X-Forwarded-For`, as entries on the left are the client's to forge).
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted_hops: usize) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(trusted_hops)
        .and_then(|i| forwarded[i].parse().ok())
        .or(peer)
}

/// How many proxies in front of the API are trusted to append the client's
/// address to `X-Forwarded-For` (`FANOUT_TRUSTED_PROXY_HOPS`).
#[derive(Debug, Clone, Copy)]
pub struct TrustedProxies(pub usize);

/// The caller's address, for limits and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    fn of(headers: &HeaderMap, extensions: &axum::http::Extensions, hops: TrustedProxies) -> Self {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        ClientIp(client_ip(headers, peer, hops.0))
    }
}

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::of(
            &parts.headers,
            &parts.extensions,
            TrustedProxies::from_ref(state),
        ))
    }
}

/// Middleware: applies the write limits before a handler runs.
pub async fn limit(
    State(limits): State<Arc<Limits>>,
    State(tokens): State<Arc<TokenKeys>>,
    State(hops): State<TrustedProxies>,
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match admit(&limits, &tokens, hops, &request) {
        Ok(()) => next.run(request).await,
        Err((scope, e)) => {
            metrics.rate_limited.with_label_values(&[scope]).inc();
            e.into_response()
        }
    }
}

fn admit(
    limits: &Limits,
    tokens: &TokenKeys,
    hops: TrustedProxies,
    request: &Request,
) -> Result<(), (&'static str, ApiError)> {
    let ClientIp(ip) = ClientIp::of(request.headers(), request.extensions(), hops);
    if let Some(ip) = ip {
        limits
            .check(&limits.address_writes, &ip, "requests from this address")
            .map_err(|e| ("address", e))?;
        if request.uri().path() == "/auth/login" {
            limits
                .check(
                    &limits.address_logins,
                    &ip,
                    "login attempts from this address",
                )
                .map_err(|e| ("login_address", e))?;
        }
    }
    // Only a valid token names a user: a forged one must not spend someone
    // else's allowance (the handler rejects it anyway). With the per-user
    // limit off, the signature is not checked here twice for nothing.
    if limits.user_writes.is_none() {
        return Ok(());
    }
    if let Ok(user) = tokens.caller(request.headers()) {
        limits
            .check(&limits.user_writes, &user, "writes by this user")
            .map_err(|e| ("user", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let headers = forwarded("1.2.3.4");
        assert_eq!(client_ip(&headers, Some(peer), 0), Some(peer));
    }

    #[test]
    fn behind_proxies_the_entry_the_outermost_trusted_proxy_added_counts() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        // The client forged the first entry; the one trusted proxy appended
        // the address it saw.
        let headers = forwarded("6.6.6.6, 203.0.113.7");
        assert_eq!(
            client_ip(&headers, Some(peer), 1),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            client_ip(&headers, Some(peer), 2),
            Some("6.6.6.6".parse().unwrap())
        );
        // Fewer entries than proxies, or junk: the peer.
        assert_eq!(client_ip(&headers, Some(peer), 3), Some(peer));
        assert_eq!(client_ip(&forwarded("junk"), Some(peer), 1), Some(peer));
        assert_eq!(client_ip(&HeaderMap::new(), Some(peer), 1), Some(peer));
    }
}
