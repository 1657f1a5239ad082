use std::collections::BTreeMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue, Request};

use super::redact::{MIN_HIDDEN_LEN, Redactor};
use super::{Dispatcher, OutboundError, PreparedCall, answer};
use crate::Secret;
use crate::config::Webhook;
use crate::core::CallResult;
use crate::secrets::fetch_all;
use crate::template::{RenderValues, Template, Variable};
use crate::transport::{RequestOptions, RequestTarget};

/// Sent with the call's idempotency key, the same for every attempt of a gate, so the receiver
/// can tell a retry from a new call.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl Dispatcher {
    /// The longest one attempt at `prepared` should take as a whole, its secrets fetched
    /// included: twice its request timeout (the webhook's `requestTimeout`, else the
    /// dispatcher's). The request itself is bounded by its timeout, but fetching the secrets is
    /// bounded only by the secret source, and a source that never answers would hold the gate
    /// in its call for good: a host driving [`send`](Self::send) bounds it by this (the
    /// runtime's engine does), as a retryable failure.
    pub fn attempt_limit(&self, prepared: &PreparedCall) -> std::time::Duration {
        let timeout = prepared
            .plan
            .webhooks()
            .get(usize::from(prepared.webhook.0))
            .map_or(self.request_timeout, |webhook| {
                self.request_timeout_of(webhook)
            });
        timeout.saturating_mul(2)
    }

    /// The webhook's `requestTimeout`, else the dispatcher's.
    fn request_timeout_of(&self, webhook: &Webhook) -> std::time::Duration {
        webhook.request_timeout.unwrap_or(self.request_timeout)
    }

    /// Performs one attempt of a prepared call and says how it ended; hand the result to
    /// [`Deployment::handle_call_result`](crate::core::Deployment::handle_call_result).
    ///
    /// Fetches exactly the secrets the webhook's templates name, renders the request, sets
    /// `Idempotency-Key` to the call's key with `%`, spaces, control characters and what is
    /// not ASCII percent-encoded (replacing any the templates set; the same for every
    /// attempt), and, when a signer applies, the Standard Webhooks headers with `webhook-id`
    /// set to that header's value with `.` percent-encoded too (the spec forbids a dot) and the
    /// timestamp from the dispatcher's clock; applies the request timeout (`requestTimeout`,
    /// else the dispatcher's) and sends it through the direct transport or the webhook's remote
    /// network agent (`agentIdentifier`, else the target's account).
    ///
    /// - a 2xx answer is [`CallResult::Sent`];
    /// - another status fails, retryable when the webhook's `retryableStatusCodes` lists it
    ///   (without them, as [`CallResult::from_status`] says), with `Retry-After` honoured and
    ///   the reason `HTTP <code>: <first KiB of the body>`;
    /// - connection errors, timeouts and an unreachable secret store fail retryably;
    /// - a missing secret, a template that cannot render, an agent without transport fail
    ///   permanently.
    ///
    /// Reasons never contain a secret value or the gate's callback id: anything the server
    /// echoes back is redacted.
    #[tracing::instrument(
        name = "webhook_call",
        skip_all,
        fields(
            deployment = %prepared.armory.deployment_id,
            gate = prepared.call.gate.0,
            attempt = prepared.call.attempt,
            webhook = %prepared.webhook_name,
        )
    )]
    pub async fn send(&self, prepared: &PreparedCall) -> CallResult {
        let no_secrets = BTreeMap::new();
        let result = match self.exchange(prepared).await {
            Ok(result) => result,
            Err(error) => answer::from_error(
                &error,
                &Redactor::new(&no_secrets, Vec::new()),
                self.clock.now(),
            ),
        };
        match &result {
            CallResult::Sent { status } => tracing::debug!(status, "webhook call sent"),
            CallResult::Failed(failure) => tracing::warn!(
                status = failure.status,
                retryable = failure.retryable,
                reason = %failure.reason,
                "webhook call failed"
            ),
        }
        result
    }

    /// Errors returned here come before any secret value is known, so they cannot quote one;
    /// later ones become results through the redactor of the fetched secrets.
    async fn exchange(&self, prepared: &PreparedCall) -> Result<CallResult, OutboundError> {
        let plan = &prepared.plan;
        let webhook = plan
            .webhooks()
            .get(usize::from(prepared.webhook.0))
            .ok_or(OutboundError::NotInPlan { what: "webhook" })?;
        if plan
            .environments()
            .get(usize::from(prepared.call.env.0))
            .is_none()
        {
            return Err(OutboundError::NotInPlan {
                what: "environment",
            });
        }
        let transport = self.transports.route(prepared.agent.as_deref())?;
        // The same names in the same order either way; the first way skips building a set.
        let secrets = match webhook.request.sorted_secret_names() {
            Some(names) => fetch_all(&*self.secrets, names).await?,
            None => fetch_all(&*self.secrets, webhook.request.secret_names()).await?,
        };
        let request = match self.request(prepared, webhook, &secrets) {
            Ok(request) => request,
            Err(error) => {
                let redactor = Redactor::new(&secrets, callback_id_hidden(prepared, Vec::new()));
                return Ok(answer::from_error(&error, &redactor, self.clock.now()));
            }
        };
        // Cheap clones, kept for naming the request should it fail.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        // The credentials of every `Authorization` header, wherever they came from (a secret, a
        // URL's user info, the context, the file): a server echoing the headers it refused
        // would quote them, a URL's base64-encoded, a spelling no secret's needle matches.
        let sent_credentials: Vec<HeaderValue> = [AUTHORIZATION, PROXY_AUTHORIZATION]
            .iter()
            .flat_map(|name| request.headers().get_all(name))
            .cloned()
            .collect();
        // Through the trait object: the blanket impl for `Arc` would box a second future.
        let outcome = (**transport).send(request).await;
        if let Ok(response) = &outcome
            && response.status().is_success()
        {
            return Ok(CallResult::Sent {
                status: response.status().as_u16(),
            });
        }
        // Only a failure's reason can quote what was sent, so redaction is set up for failures.
        let mut hidden = if secret_before_query(webhook.request.uri()) {
            url_parts(RequestTarget::new(method, &uri).origin(), &uri)
        } else {
            Vec::new()
        };
        for value in &sent_credentials {
            // Lossily: a value may hold bytes beyond ASCII, and a server quoting it would too.
            hidden.extend(credential_parts(&String::from_utf8_lossy(value.as_bytes())));
        }
        let redactor = Redactor::new(&secrets, callback_id_hidden(prepared, hidden));
        let mut result = match outcome {
            Ok(response) => answer::from_response(&response, &redactor, self.clock.now()),
            Err(error) => answer::from_error(&error.into(), &redactor, self.clock.now()),
        };
        // The deployment decides by the webhook's `retryableStatusCodes` anyway; deciding the
        // same here keeps what `send` returns and logs in step with it.
        if let CallResult::Failed(failure) = &mut result {
            failure.retryable = failure.retryable_for(webhook);
        }
        Ok(result)
    }

    fn request(
        &self,
        prepared: &PreparedCall,
        webhook: &Webhook,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<Request<Bytes>, OutboundError> {
        let values = RenderValues {
            armory: &prepared.armory,
            context: &prepared.context,
            secrets,
        };
        let mut request: Request<Bytes> = webhook
            .request
            .render_limited(&values, self.max_request_bytes)?
            .into();
        let key = &prepared.call.idempotency_key;
        request
            .headers_mut()
            .insert(IDEMPOTENCY_KEY, idempotency_key(key));
        #[cfg(feature = "signing")]
        if let Some(signer) =
            self.signers
                .for_call(&webhook.name, request.uri(), prepared.agent.is_none())
        {
            signer.sign_request(&message_id(key), self.clock.now().timestamp(), &mut request)?;
        }
        let options = RequestOptions::default()
            .with_timeout(self.request_timeout_of(webhook))
            .with_max_response_bytes(self.max_response_bytes);
        request.extensions_mut().insert(options);
        // For a transport to tell which gate and attempt a request is (metrics, routing, a
        // test's recording); not sent.
        request.extensions_mut().insert(prepared.call.clone());
        Ok(request)
    }
}

/// What an idempotency key has percent-encoded where it is sent, beside every byte beyond
/// ASCII: spaces and control characters, which servers read differently in a header or
/// refuse, and `%`, so that no two keys are sent alike (`a b` and `a%20b`).
const KEY_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// The `Idempotency-Key` of a call: its idempotency key, with [`KEY_ENCODED`] percent-encoded,
/// so that any deployment id a host gives (`déploiement-7`, `release 42`) can be sent, and
/// stays one key per gate. Keys needing none of it, such as the engine's, are sent as they
/// are.
fn idempotency_key(key: &str) -> HeaderValue {
    let sent = percent_encoding::utf8_percent_encode(key, KEY_ENCODED).to_string();
    HeaderValue::try_from(sent).expect("a percent-encoded key is visible ASCII")
}

/// The `webhook-id` of a signed call: its idempotency key as `Idempotency-Key` carries it,
/// with the dot percent-encoded too, since Standard Webhooks forbids it in the id (the signed
/// text is `id.timestamp.body`) and a host may give deployments ids with dots
/// (`checkout-1.4.0`); the signer takes visible ASCII only, which the rest of the encoding
/// sees to.
#[cfg(feature = "signing")]
fn message_id(key: &str) -> std::borrow::Cow<'_, str> {
    const SENT_ENCODED: &percent_encoding::AsciiSet = &KEY_ENCODED.add(b'.');
    percent_encoding::utf8_percent_encode(key, SENT_ENCODED).into()
}

/// The origin of the URL a request went to, `printed` as errors print it, and the parts of the
/// URL a server may echo on their own (a 404 page quoting the path, a JSON error's `"path"`
/// field, a validation error naming the query value it refused): the path with and without
/// the query, as sent and decoded, the query as sent and decoded (a signed URL's
/// `sig=abc%2Bdef` echoed as `sig=abc+def`), the host, each path segment of at least
/// [`MIN_HIDDEN_LEN`] characters as sent and decoded, and each query value as sent,
/// percent-decoded and form-decoded (`+` for a space). A part shorter than two characters is
/// left out, since hiding it would hide every `/` of a text.
fn url_parts(printed: &str, uri: &http::Uri) -> Vec<String> {
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned()
    };
    let path = uri.path();
    let query = uri.query();
    let mut parts: Vec<String> = [
        Some(printed),
        uri.path_and_query().map(http::uri::PathAndQuery::as_str),
        Some(path),
        query,
        uri.host(),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .collect();
    parts.push(decode(path));
    parts.extend(query.map(decode));
    for segment in path
        .split('/')
        .filter(|segment| segment.len() >= MIN_HIDDEN_LEN)
    {
        parts.extend([segment.to_owned(), decode(segment)]);
    }
    // A parameter without `=` is a value too: some APIs take a bare key as the query.
    for parameter in query.into_iter().flat_map(|query| query.split('&')) {
        let value = parameter
            .split_once('=')
            .map_or(parameter, |(_, value)| value);
        parts.extend([
            value.to_owned(),
            decode(value),
            decode(&value.replace('+', " ")),
        ]);
    }
    parts.retain(|part| part.len() >= 2);
    // Spellings are worked out for each part: a value that decodes to itself is one part.
    parts.sort_unstable();
    parts.dedup();
    parts
}

/// An `Authorization` value, its credentials after the scheme on their own, and for `Basic`
/// their decoded `user:password` and password (the user instead when there is no password, as
/// a token given as a URL's user name is), which a server may quote as it read them (a secret
/// URL's user info goes there whole, so no secret's needle matches its parts); none shorter
/// than two characters (an empty secret's `Bearer `), whose hiding would hide the scheme's
/// name, or every letter of a text.
fn credential_parts(value: &str) -> Vec<String> {
    // RFC 7617 puts no charset on the pair, and some clients leave the padding out.
    const BASIC: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let (scheme, credentials) = value.split_once(' ').unwrap_or(("", value));
    let credentials = credentials.trim();
    if credentials.len() < 2 {
        return Vec::new();
    }
    let mut parts = vec![value.to_owned()];
    if credentials != value {
        parts.push(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Ok(pair) = BASIC.decode(credentials)
    {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let alone = match pair.iter().position(|&b| b == b':') {
            Some(colon) if colon + 1 < pair.len() => &pair[colon + 1..],
            Some(colon) => &pair[..colon],
            None => &pair[..],
        };
        parts.extend([text(&pair), text(alone)]);
        parts.retain(|part| part.len() >= 2);
        parts.dedup();
    }
    parts
}

/// `hidden` and the gate's callback id: with any callback token, whoever holds it resolves the
/// gate, and a receiver echoing the request it refused (`{{armory.callbackUri}}` in a body)
/// would otherwise put it in the stored history and the log. Its 32 hex digits are the same
/// in every spelling a server echoes them in, JSON-escaped or percent-encoded.
fn callback_id_hidden(prepared: &PreparedCall, mut hidden: Vec<String>) -> Vec<String> {
    hidden.push(prepared.call.callback_id.to_string());
    hidden
}

/// Whether a secret lands in the scheme, host or path of the URL: transport errors quote the
/// origin, and a server's answer may echo the path. Placeholders cannot contain `?` or `#`, so
/// the first one in the source ends the part before the query.
fn secret_before_query(uri: &Template) -> bool {
    let source = uri.source();
    let end = source.find(['?', '#']).unwrap_or(source.len());
    Template::parse(&source[..end]).map_or(true, |before| {
        before
            .variables()
            .any(|variable| matches!(variable, Variable::Secret(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::{credential_parts, url_parts};

    /// When a secret wrote the URL, a server may echo one query value (a validation error
    /// naming the key it refused) or one path segment (a webhook token) on its own. Short
    /// segments and the query's names are no secret, and hiding them would blank messages.
    #[test]
    fn a_secret_url_s_query_values_and_long_segments_are_hidden_on_their_own() {
        let uri: http::Uri = "https://hooks.example.com/services/T0/B0/XYZ0123456789abcdef\
                              ?api_key=k3y%2BABC+DEF&v=2&flag"
            .parse()
            .unwrap();
        let parts = url_parts("https://hooks.example.com", &uri);
        for part in [
            "XYZ0123456789abcdef",
            "k3y%2BABC+DEF",
            "k3y+ABC+DEF",
            "k3y+ABC DEF",
            "flag",
        ] {
            assert!(parts.iter().any(|p| p == part), "{part} in {parts:?}");
        }
        for part in ["services", "T0", "B0", "api_key", "v", "2"] {
            assert!(!parts.iter().any(|p| p == part), "{part} in {parts:?}");
        }
    }

    #[test]
    fn credentials_are_hidden_whole_and_alone_unless_too_short_to_mean_anything() {
        assert_eq!(
            credential_parts("Basic Y2k6dG9r"),
            ["Basic Y2k6dG9r", "Y2k6dG9r", "ci:tok", "tok"]
        );
        // `ci:x`: a one-character password is not hidden alone.
        assert_eq!(
            credential_parts("basic Y2k6eA=="),
            ["basic Y2k6eA==", "Y2k6eA==", "ci:x"]
        );
        // `t0ken:`, a token given as a URL's user name, without padding: the user alone.
        assert_eq!(
            credential_parts("Basic dDBrZW46"),
            ["Basic dDBrZW46", "dDBrZW46", "t0ken:", "t0ken"]
        );
        // `ci:p\xe4ss` in Latin-1, unpadded: hidden as a server quotes it, lossily.
        assert_eq!(
            credential_parts("Basic Y2k6cORzcw"),
            [
                "Basic Y2k6cORzcw",
                "Y2k6cORzcw",
                "ci:p\u{fffd}ss",
                "p\u{fffd}ss"
            ]
        );
        assert!(credential_parts("Bearer ").is_empty());
        assert!(credential_parts("Bearer x").is_empty());
        assert_eq!(credential_parts("tok3n"), ["tok3n"]);
    }
}
