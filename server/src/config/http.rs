//! Settings of the HTTP edge (`[http]`): timeouts, the body limit, rate limits, and where
//! the client's address comes from behind a proxy.

use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// A client has this long to send a request's headers (slow clients are cut off).
    pub header_timeout_secs: u64,
    /// A whole request, its body included, must be answered within this long (408 after).
    /// Streamed exports are timed until they start.
    pub request_timeout_secs: u64,
    /// The largest request body accepted (413 beyond). The portal's forms are small.
    pub body_limit_bytes: usize,
    /// Sign-in attempts (`/auth/*`, `/demo/login`) per client address and minute.
    pub sign_in_per_minute: u32,
    /// Server function calls per client address and second, sustained ...
    pub server_fn_per_second: u32,
    /// ... and in a burst.
    pub server_fn_burst: u32,
    /// New access requests per person and hour (counted in the database, so across
    /// replicas).
    pub new_requests_per_hour: u32,
    /// Behind a reverse proxy: the header in which it puts the client's address
    /// (`x-forwarded-for`: the last address in it, the one the proxy added, is used).
    /// Unset, the address of the TCP peer is the client's. Never set it when clients can
    /// reach the portal without the proxy: they could then choose their own address.
    pub client_ip_header: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            body_limit_bytes: 64 * 1024,
            sign_in_per_minute: 60,
            server_fn_per_second: 20,
            server_fn_burst: 200,
            new_requests_per_hour: 30,
            client_ip_header: None,
        }
    }
}

impl HttpSettings {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }
}
