//! Parsing JSON-RPC 2.0 messages in place: a request's `method` borrowed where it has no
//! escapes, its `params` and `id` kept as the raw bytes received (serde_json's `RawValue`),
//! so an id such as `12345678901234567890123` goes back digit for digit, never through f64.
//!
//! Validation follows the specification: `"jsonrpc": "2.0"` exactly, `method` a string,
//! `params` (if present) an array or an object, `id` (if present) a string, a number or
//! null. A request without `id` is a notification. Anything else is an invalid request,
//! answered even without an id.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Deepest nesting of arrays and objects accepted in a message; deeper is a parse error
/// (the same bound serde_json puts on building values, so a command's result and a request
/// are held to one limit).
pub const MAX_DEPTH: usize = 128;

/// Why a message as a whole could not be read: answered with one error, `id: null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Not UTF-8, not JSON, or nested deeper than [`MAX_DEPTH`] (-32700).
    Parse(&'static str),
    /// `[]` (-32600).
    EmptyBatch,
    /// More calls in one batch than allowed (-32600).
    BatchTooLarge { len: usize, max: usize },
}

/// One call, validated.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Cow<'a, str>,
    /// The raw `params`: an array or an object, as received.
    pub params: Option<&'a RawValue>,
    /// The raw `id`; `None` for a notification.
    pub id: Option<&'a RawValue>,
}

impl Request<'_> {
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }
}

/// A call that is not a valid request: answered with -32600 and the id, when one could be
/// read (else null).
#[derive(Debug, Clone, Copy)]
pub struct Invalid<'a> {
    pub id: Option<&'a RawValue>,
    pub why: &'static str,
}

/// One element of a message: a valid request or why it is not.
pub type Call<'a> = Result<Request<'a>, Invalid<'a>>;

/// A message: one call, or a batch of them (at least one, at most the limit).
#[derive(Debug)]
pub enum Message<'a> {
    Single(Call<'a>),
    Batch(Vec<Call<'a>>),
}

/// The fields a request may have, each kept raw; `null` stays `Some("null")` (an id of null
/// is a request, not a notification).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one frame's body.
///
/// # Errors
/// [`MessageError`] for what makes the whole message unreadable.
pub fn parse(body: &[u8], max_batch: usize) -> Result<Message<'_>, MessageError> {
    let text = std::str::from_utf8(body).map_err(|_| MessageError::Parse("invalid UTF-8"))?;
    if too_deep(text.as_bytes(), MAX_DEPTH) {
        return Err(MessageError::Parse("nested too deeply"));
    }
    let start = text.trim_ascii_start();
    if start.starts_with('[') {
        let elements: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|_| MessageError::Parse("not valid JSON"))?;
        if elements.is_empty() {
            return Err(MessageError::EmptyBatch);
        }
        if elements.len() > max_batch {
            return Err(MessageError::BatchTooLarge {
                len: elements.len(),
                max: max_batch,
            });
        }
        return Ok(Message::Batch(elements.into_iter().map(call).collect()));
    }
    match serde_json::from_str::<Wire<'_>>(text) {
        Ok(w) => Ok(Message::Single(validate(w))),
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape (`1`, `"x"`, a duplicated key), or garbage after
            // a value that failed first: only a syntax check tells them apart.
            serde_json::from_str::<&RawValue>(text)
                .map_err(|_| MessageError::Parse("not valid JSON"))?;
            Ok(Message::Single(Err(Invalid {
                id: None,
                why: "not a request object",
            })))
        }
        Err(_) => Err(MessageError::Parse("not valid JSON")),
    }
}

/// One batch element (already known to be valid JSON).
fn call(raw: &RawValue) -> Call<'_> {
    match serde_json::from_str::<Wire<'_>>(raw.get()) {
        Ok(w) => validate(w),
        Err(_) => Err(Invalid {
            id: None,
            why: "not a request object",
        }),
    }
}

fn validate(w: Wire<'_>) -> Call<'_> {
    // The id first, so the error for anything else can carry it.
    let id = match w.id {
        Some(id) if !is_valid_id(id) => {
            return Err(Invalid {
                id: None,
                why: "id must be a string, a number or null",
            });
        }
        id => id,
    };
    let invalid = |why| Err(Invalid { id, why });
    match w.jsonrpc {
        Some(v) if is_two_point_oh(v) => {}
        Some(_) => return invalid("\"jsonrpc\" must be \"2.0\""),
        None => return invalid("\"jsonrpc\": \"2.0\" is missing"),
    }
    let Some(method) = w.method else {
        return invalid("method is missing");
    };
    let Some(method) = string(method) else {
        return invalid("method must be a string");
    };
    if let Some(p) = w.params
        && !matches!(p.get().as_bytes().first(), Some(b'[' | b'{'))
    {
        return invalid("params must be an array or an object");
    }
    Ok(Request {
        method,
        params: w.params,
        id,
    })
}

/// A string, a number or null (RawValue has no surrounding whitespace).
fn is_valid_id(id: &RawValue) -> bool {
    matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

fn is_two_point_oh(v: &RawValue) -> bool {
    v.get() == "\"2.0\"" || string(v).is_some_and(|s| s == "2.0")
}

/// The value of a JSON string, borrowed when it has no escapes.
fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    if !v.get().starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(v.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(v.get()).ok().map(Cow::Owned),
    }
}

/// Whether arrays and objects nest deeper than `max` anywhere in `json` (brackets inside
/// strings do not count). One pass, no allocation; run before anything builds values.
pub fn too_deep(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut strings = super::Strings::default();
    for &b in json {
        if !strings.outside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(s: &str) -> Call<'_> {
        match parse(s.as_bytes(), 100) {
            Ok(Message::Single(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn requests_and_notifications() {
        let r = single(r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#)
            .unwrap();
        assert_eq!(r.method, "subtract");
        assert_eq!(r.params.unwrap().get(), "[42, 23]");
        assert_eq!(r.id.unwrap().get(), "1");
        let n = single(r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#).unwrap();
        assert!(n.is_notification());
        let null_id = single(r#"{"jsonrpc":"2.0","method":"m","id":null}"#).unwrap();
        assert_eq!(null_id.id.unwrap().get(), "null");
        let escaped = single(r#"{"jsonrpc":"2\u002e0","method":"a\u0062c","id":"x"}"#).unwrap();
        assert_eq!(escaped.method, "abc");
    }

    #[test]
    fn ids_stay_as_received() {
        for id in [
            "12345678901234567890123",
            "-0.5e10",
            "\"\\u00e9t\\u00e9\"",
            "\"\"",
            "0",
            "1.0",
            "null",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#);
            assert_eq!(single(&text).unwrap().id.unwrap().get(), id);
        }
    }

    #[test]
    fn invalid_requests() {
        let cases = [
            (r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#, None),
            (r#"{"method": "m", "id": 1}"#, Some("1")),
            (r#"{"jsonrpc": "1.0", "method": "m", "id": 2}"#, Some("2")),
            (r#"{"jsonrpc": 2.0, "method": "m", "id": 3}"#, Some("3")),
            (r#"{"jsonrpc": "2.0", "id": "x"}"#, Some("\"x\"")),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "params": 5, "id": 4}"#,
                Some("4"),
            ),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "params": null, "id": 4}"#,
                Some("4"),
            ),
            (r#"{"jsonrpc": "2.0", "method": "m", "id": [1]}"#, None),
            (r#"{"jsonrpc": "2.0", "method": "m", "id": true}"#, None),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "id": 1, "id": 2}"#,
                None,
            ),
            ("1", None),
            ("\"x\"", None),
            ("null", None),
        ];
        for (text, id) in cases {
            let e = single(text).unwrap_err();
            assert_eq!(e.id.map(RawValue::get), id, "{text}");
        }
    }

    #[test]
    fn parse_errors() {
        for body in [
            &b"{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]"[..],
            b"",
            b"   ",
            b"1 x",
            b"{\"a\":1} {\"b\":2}",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\",\"id\":1}",
            b"\xef\xbb\xbf{}",
            b"[",
            b"[1,",
        ] {
            assert!(
                matches!(parse(body, 100), Err(MessageError::Parse(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_is_a_parse_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(matches!(
            parse(deep.as_bytes(), 100),
            Err(MessageError::Parse(_))
        ));
        let params = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{}{},"id":1}}"#,
            "{\"a\":".repeat(200),
            "1".to_string() + &"}".repeat(200)
        );
        assert!(matches!(
            parse(params.as_bytes(), 100),
            Err(MessageError::Parse(_))
        ));
        // Brackets inside strings are not nesting.
        let in_string = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":["{}"],"id":1}}"#,
            "[".repeat(1000)
        );
        assert!(single(&in_string).is_ok());
        let at_limit = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(matches!(
            parse(at_limit.as_bytes(), 100),
            Ok(Message::Batch(_))
        ));
    }

    #[test]
    fn batches() {
        assert_eq!(parse(b"[]", 100).unwrap_err(), MessageError::EmptyBatch);
        assert_eq!(parse(b" [ ] ", 100).unwrap_err(), MessageError::EmptyBatch);
        let Ok(Message::Batch(calls)) = parse(b"[1,2,3]", 100) else {
            panic!("not a batch");
        };
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(Result::is_err));
        assert_eq!(
            parse(b"[1,2,3]", 2).unwrap_err(),
            MessageError::BatchTooLarge { len: 3, max: 2 }
        );
        let mixed = br#"[
            {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
            {"foo": "boo"}
        ]"#;
        let Ok(Message::Batch(calls)) = parse(mixed, 100) else {
            panic!("not a batch");
        };
        assert!(calls[0].as_ref().is_ok_and(|r| !r.is_notification()));
        assert!(calls[1].as_ref().is_ok_and(Request::is_notification));
        assert!(calls[2].is_err());
    }
}
