use std::error::Error;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError};

use super::CallbackReport;
use super::fields::{BodyKind, Field, Fields, NotFields};

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadError {
    /// It is longer than the limit; the rest was left unread.
    TooLarge,
    /// The stream failed (e.g. the client went away).
    Broken,
}

/// Reads at most `limit` bytes: a declared length over the limit is refused before reading,
/// and an undeclared one as soon as the bytes read pass it, so an oversized body is never
/// buffered. The chunks are copied into one buffer as they come, rather than kept each in its
/// own: a body sent a byte at a time would otherwise hold about 50 times its length.
pub(super) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    // The usual body comes in one chunk, which is kept as it came, uncopied.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame.map_err(read_error)?.into_data() else {
            continue;
        };
        let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if held + data.remaining() > limit {
            return Err(ReadError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data.copy_to_bytes(data.remaining())),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.reserve(earlier.len() + data.remaining());
                    joined.extend_from_slice(&earlier);
                }
                joined.put(data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// What a body's failure means: a limit of the host's own around the body
/// (`RequestBodyLimitLayer`, `Limited`) is a body too large, like ours; anything else, a broken
/// stream. The limit's error is looked for down the chain of sources: axum wraps every body it
/// routes, and with it the limit's error.
fn read_error(error: impl Into<Box<dyn Error + Send + Sync>>) -> ReadError {
    let error = error.into();
    let mut link: Option<&(dyn Error + 'static)> = Some(&*error);
    while let Some(e) = link {
        if e.is::<LengthLimitError>() {
            return ReadError::TooLarge;
        }
        link = e.source();
    }
    ReadError::Broken
}

/// Whether a `Content-Type` allows a JSON body: absent, `application/json` or
/// `application/<anything>+json`, parameters such as `charset` allowed.
pub(super) fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    // As bytes: searching a `str` for a `char` cost more than all the rest of the check, and
    // text `to_str` accepts is ASCII, whose whitespace `trim_ascii` trims as `trim` would.
    let value = value.as_bytes();
    let essence = match value.iter().position(|&b| b == b';') {
        Some(end) => &value[..end],
        None => value,
    }
    .trim_ascii();
    let Some(slash) = essence.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (kind, subtype) = (&essence[..slash], &essence[slash + 1..]);
    let suffixed = subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json");
    kind.eq_ignore_ascii_case(b"application") && (subtype.eq_ignore_ascii_case(b"json") || suffixed)
}

impl CallbackReport {
    /// Parses a callback body (PROTOCOL.md §5, §8) as [`CallbackHandler`](super::CallbackHandler)
    /// does, `mdMessage` at most `message_limit` bytes: for a host that serves callbacks through
    /// a framework of its own and hands them to a [`GateService`](super::GateService). The
    /// handler's checks before it are the host's to make: the bearer token, a JSON
    /// `Content-Type` (else 415), and the body's size, read no further than a limit (else 413;
    /// the handler's default is [`CallbackHandler::DEFAULT_BODY_LIMIT`](super::CallbackHandler::DEFAULT_BODY_LIMIT)).
    ///
    /// ```
    /// use hookgate::server::{CallbackHandler, CallbackReport};
    /// let limit = CallbackHandler::DEFAULT_MESSAGE_LIMIT;
    /// assert_eq!(
    ///     CallbackReport::from_json(br#"{"success": true, "mdMessage": "all green"}"#, limit),
    ///     Ok(CallbackReport::Outcome { success: true, message: Some("all green".into()) })
    /// );
    /// let refused = CallbackReport::from_json(br#"{"success": "yes"}"#, limit).unwrap_err();
    /// assert!(refused.to_string().contains("`success` must be the JSON boolean"));
    /// ```
    pub fn from_json(body: &[u8], message_limit: usize) -> Result<Self, InvalidBody> {
        parse_callback(body, message_limit).map_err(|message| InvalidBody { message })
    }
}

/// A callback body that cannot be used, which [`CallbackHandler`](super::CallbackHandler)
/// answers with `400 invalid_body`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct InvalidBody {
    /// What is wrong, naming the field, and what to send instead.
    pub message: String,
}

/// Parses a callback body (PROTOCOL.md §5, §8). The error says which field is wrong.
///
/// With `success` the body is an outcome (an `inProgress` beside it is ignored); without it,
/// `"inProgress": true` and an `mdMessage` make a progress note. `"mdMessage": null` is refused
/// as not a string (§5); a sender with no message leaves the field out. Unknown fields are
/// ignored.
pub(super) fn parse_callback(body: &[u8], message_limit: usize) -> Result<CallbackReport, String> {
    let fields = object(body, BodyKind::Callback)?;
    let message = text(fields.md_message, "mdMessage", message_limit)?;
    match fields.success {
        Some(Field::Bool(success)) => Ok(CallbackReport::Outcome { success, message }),
        Some(_) => Err("`success` must be the JSON boolean true or false (not a string or null)".to_owned()),
        None => match fields.in_progress {
            Some(Field::Bool(true)) => message
                .map(|message| CallbackReport::Progress { message })
                .ok_or_else(|| "`mdMessage` is missing; a progress note (`\"inProgress\": true`) needs one".to_owned()),
            Some(Field::Bool(false)) | None => Err(
                "`success` is missing; send true or false (or `\"inProgress\": true` with an `mdMessage` for a progress note)"
                    .to_owned(),
            ),
            Some(_) => Err("`inProgress` must be the JSON boolean true or false".to_owned()),
        },
    }
}

/// Parses an approval body: empty, or `{"comment": "..."}` (the comment left out, never `null`).
pub(super) fn parse_decision(body: &[u8], comment_limit: usize) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    text(
        object(body, BodyKind::Decision)?.comment,
        "comment",
        comment_limit,
    )
}

fn object(body: &[u8], kind: BodyKind) -> Result<Fields, String> {
    let example = kind.example();
    Fields::read(body, kind).map_err(|e| match e {
        NotFields::NotAnObject => format!("the body must be a JSON object such as {example}"),
        NotFields::NotUtf8(e) => format!(
            "the body is not valid UTF-8 (from byte {}); send a JSON object such as {example}",
            e.valid_up_to()
        ),
        NotFields::Invalid(e) => {
            format!("the body is not valid UTF-8 JSON ({e}); send a JSON object such as {example}")
        }
        NotFields::Repeated(name) => {
            format!("`{name}` is given more than once; give each field once, as in {example}")
        }
    })
}

/// An optional string field: absent is `None`; `null`, like any other JSON that is not a
/// string, is refused (PROTOCOL.md §5: "`mdMessage` not a string" is `400`).
fn text(value: Option<Field>, field: &str, limit: usize) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Field::Null) => Err(format!(
            "`{field}` must be a string, not null; leave it out to send none"
        )),
        Some(Field::String(s)) if s.len() <= limit => Ok(Some(s)),
        Some(Field::String(_)) => Err(format!(
            "`{field}` is longer than {limit} bytes; shorten it"
        )),
        Some(Field::NotText) => Err(format!(
            "`{field}` must be text: it escapes one half of a UTF-16 surrogate pair (such as \
             `\\ud800`) without the other"
        )),
        Some(_) => Err(format!("`{field}` must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use http_body::Frame;

    use super::*;

    /// A body that arrives in the chunks `0` makes as each is asked for, ready at once.
    struct Chunks<I>(I);

    impl<I: Iterator<Item = Bytes> + Unpin> Body for Chunks<I> {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.next().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn read<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
    where
        B: Body,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let read = std::pin::pin!(read_limited(body, limit));
        match read.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("every chunk is ready at once"),
        }
    }

    /// Bytes whose buffer counts, in `0`, the buffers alive.
    struct Counted(Arc<AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            b"x"
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A body sent a byte at a time is joined into one buffer, within the limit; one sent
    /// whole is kept as it came.
    #[test]
    fn chunks_are_joined_within_the_limit_and_one_chunk_is_kept_as_it_came() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let bytes = |range: std::ops::Range<usize>| Bytes::copy_from_slice(&body[range]);
        let one_at_a_time = || Chunks((0..1000).map(|i| bytes(i..i + 1)));
        assert_eq!(read(one_at_a_time(), 1000).unwrap(), body);
        assert_eq!(read(one_at_a_time(), 999), Err(ReadError::TooLarge));
        let split = [bytes(0..10), Bytes::new(), bytes(10..1000)];
        assert_eq!(read(Chunks(split.into_iter()), 1000).unwrap(), body);

        let whole = bytes(0..1000);
        let read_whole = read(Chunks(std::iter::once(whole.clone())), 1000).unwrap();
        assert_eq!(read_whole.as_ptr(), whole.as_ptr(), "copied");
        assert_eq!(read(Chunks(std::iter::empty()), 10).unwrap(), Bytes::new());
    }

    /// The chunks of a body sent a byte at a time are not kept while the rest comes: each
    /// would hold an allocation of its own, some 50 times its byte.
    #[test]
    fn chunks_are_not_kept_while_the_body_is_read() {
        let (live, most) = (Arc::new(AtomicUsize::new(0)), AtomicUsize::new(0));
        let counted = (0..1000).map(|_| {
            let alive = live.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(alive, Ordering::SeqCst);
            Bytes::from_owner(Counted(Arc::clone(&live)))
        });
        assert_eq!(read(Chunks(counted), 1000).unwrap().len(), 1000);
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 2, "{most} chunks held at once");
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    /// A host's own limit around the body is answered as ours is, 413 rather than 400.
    #[test]
    fn a_hosts_limit_around_the_body_is_a_body_too_large() {
        let chunks = Chunks(std::iter::once(Bytes::from_static(b"0123456789")));
        let limited = http_body_util::Limited::new(chunks, 4);
        assert_eq!(read(limited, 100), Err(ReadError::TooLarge));
    }

    fn parse(body: &str) -> Result<CallbackReport, String> {
        parse_callback(body.as_bytes(), 16)
    }

    #[test]
    fn outcomes_and_progress_notes() {
        assert_eq!(
            parse(r#"{"success": false, "mdMessage": "broken", "extra": [1]}"#),
            Ok(CallbackReport::Outcome {
                success: false,
                message: Some("broken".into())
            })
        );
        assert_eq!(
            parse(r#"{"success": true}"#),
            Ok(CallbackReport::Outcome {
                success: true,
                message: None
            })
        );
        assert_eq!(
            parse(r#"{"inProgress": true, "mdMessage": "50%"}"#),
            Ok(CallbackReport::Progress {
                message: "50%".into()
            })
        );
    }

    #[test]
    fn each_refusal_names_the_field() {
        for (body, field) in [
            (r#"{"success": "true"}"#, "`success`"),
            (r#"{"success": null}"#, "`success`"),
            (r#"{}"#, "`success`"),
            (r#"{"inProgress": false}"#, "`success`"),
            (r#"{"inProgress": 1}"#, "`inProgress`"),
            (r#"{"inProgress": true}"#, "`mdMessage`"),
            (r#"{"success": true, "mdMessage": 5}"#, "`mdMessage`"),
            (r#"{"success": true, "mdMessage": null}"#, "`mdMessage`"),
            (r#"{"inProgress": true, "mdMessage": null}"#, "`mdMessage`"),
            (
                r#"{"success": true, "mdMessage": "seventeen bytes!!"}"#,
                "`mdMessage`",
            ),
            ("[]", "JSON object"),
            ("", "not valid"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(field), "{body}: {err}");
        }
        assert!(parse_callback(b"{\"success\": \xff}", 16).is_err());
    }

    #[test]
    fn content_types() {
        let ct = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(is_json(None));
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.x+json",
            " application/json ",
            "\tapplication/json\t; charset=utf-8",
            "application/json;",
            "application/problem+JSON ;x=y",
        ] {
            assert!(is_json(ct(ok).as_ref()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "json",
            "text/json",
            "",
            "application/+json",
            "application /json",
            "application/ json",
            "; application/json",
            "/json",
        ] {
            assert!(!is_json(ct(bad).as_ref()), "{bad}");
        }
        let not_text = HeaderValue::from_bytes(b"application/json; charset=\xff").unwrap();
        assert!(!is_json(Some(&not_text)), "a value that is not text");
    }

    #[test]
    fn decisions_take_an_optional_comment() {
        assert_eq!(parse_decision(b"", 8), Ok(None));
        assert_eq!(
            parse_decision(br#"{"comment": "ok"}"#, 8),
            Ok(Some("ok".into()))
        );
        assert_eq!(parse_decision(b"{}", 8), Ok(None));
        for body in [&br#"{"comment": 1}"#[..], br#"{"comment": null}"#] {
            assert!(parse_decision(body, 8).unwrap_err().contains("`comment`"));
        }
    }
}
