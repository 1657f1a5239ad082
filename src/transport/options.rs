use std::time::Duration;

/// Per-request limits, carried in the request's extensions
/// (`request.extensions_mut().insert(options)`).
///
/// A transport honours these when present and uses its own defaults otherwise.
///
/// ```
/// use std::time::Duration;
/// use hookgate::transport::RequestOptions;
/// let options = RequestOptions::default().with_timeout(Duration::from_secs(5));
/// assert_eq!(options.max_response_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// The longest the whole exchange may take, from connecting to the last body byte.
    pub timeout: Duration,
    /// How many bytes of the response body are read; the rest is dropped unread.
    pub max_response_bytes: usize,
}

impl RequestOptions {
    /// Sets the request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many bytes of the response body are read.
    #[must_use]
    pub fn with_max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }
}

impl Default for RequestOptions {
    /// 30 seconds and 64 KiB.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// Marker a transport puts in a response's extensions when it cut the body at
/// [`RequestOptions::max_response_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTruncated;
