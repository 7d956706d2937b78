//! Writing responses: `{"jsonrpc":"2.0","result":…,"id":…}` and the error form, straight
//! into a buffer, with the id and the result as raw JSON bytes (never re-encoded).

use super::code;

/// The id of a response when none could be read.
pub const NULL_ID: &[u8] = b"null";

/// A success response. `result` and `id` must be JSON texts.
pub fn result(id: &[u8], result: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"result\":");
    out.extend_from_slice(result);
    out.extend_from_slice(b",\"id\":");
    out.extend_from_slice(id);
    out.push(b'}');
}

/// An error response with the code's standard message (or `message` when given) and
/// optional `data` (a JSON text).
pub fn error(id: &[u8], code: i32, message: Option<&str>, data: Option<&[u8]>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"error\":{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    string(message.unwrap_or(code::message(code)), out);
    if let Some(data) = data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data);
    }
    out.extend_from_slice(b"},\"id\":");
    out.extend_from_slice(id);
    out.push(b'}');
}

/// `s` as a JSON string.
pub fn string(s: &str, out: &mut Vec<u8>) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Copies valid JSON without the whitespace between tokens, so a value received
/// pretty-printed (params over LSP, a command's `jq` output) fits on one ndjson line.
pub fn minify(json: &[u8], out: &mut Vec<u8>) {
    if !json
        .iter()
        .any(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(json);
        return;
    }
    out.reserve(json.len());
    let mut strings = super::Strings::default();
    for &b in json {
        if strings.outside(b) && matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
}

/// Joins finished responses of a batch into one array.
pub fn batch(responses: &[Vec<u8>], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, r) in responses.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn value(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn responses_are_json() {
        let mut out = Vec::new();
        result(b"12345678901234567890123", b"[1,2]", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"jsonrpc":"2.0","result":[1,2],"id":12345678901234567890123}"#
        );
        out.clear();
        error(NULL_ID, code::PARSE_ERROR, None, None, &mut out);
        assert_eq!(
            value(&out),
            json!({"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null})
        );
        out.clear();
        error(
            b"\"a\"",
            -32000,
            Some("quote \" and\nnewline"),
            Some(br#"{"exit":3}"#),
            &mut out,
        );
        assert!(!out.contains(&b'\n'));
        assert_eq!(value(&out)["error"]["message"], "quote \" and\nnewline");
        assert_eq!(value(&out)["error"]["data"]["exit"], 3);
        out.clear();
        minify(
            b" { \"a b\" : [ 1 ,\n 2 ] , \"c\\\" d\" : \"\\\\\" }\n",
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a b":[1,2],"c\" d":"\\"}"#
        );
        out.clear();
        batch(&[b"1".to_vec(), b"2".to_vec()], &mut out);
        assert_eq!(out, b"[1,2]");
    }
}
