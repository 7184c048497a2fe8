//! The platform's RetCodes: what each means and what a device should do.
//!
//! Owns: the table of section 8 of the protocol reference (the codes a
//! device can meet) and the split into "retry later" and "refused".
//! Must not touch: JSON, topics, the client.

/// What a RetCode means, in a few words (unknown codes say so).
pub fn meaning(code: i64) -> &'static str {
    match code {
        0 => "success",
        110 => "request timed out, retry later",
        130 | 150 | 200 | 999 => "service temporarily unavailable, retry later",
        140 | 240 => "authorization error",
        151 => "gateway cache unavailable, retry later",
        171 => "signature error",
        210 => "a key parameter is missing",
        220 => "a parameter is out of range",
        230 => "parameter error (malformed request)",
        310 => "parameter type error",
        100008 => "device does not exist",
        100014 => "device password incorrect",
        100026 => "shadow version conflict",
        100027 => "the device shadow is disabled for this product",
        100038 => "identifier does not exist in the thing model",
        100039 => "device not online",
        100040 => "command timeout",
        100041 => "command reply error",
        100049 => "read-only property",
        100053 => "called too frequently, retry later",
        100058 => "property not defined in the thing model",
        174 => "HTTP token does not exist",
        100070 => "HTTP timestamp out of range (check the clock)",
        100071 => "HTTP: product or device not found",
        100072 => "HTTP: device disabled",
        100073 => "HTTP token invalid",
        100074 => "HTTP token expired",
        100075 => "HTTP: no permission to publish to this topic",
        100076 => "HTTP body too long",
        100077 => "HTTP publish failed, retry later",
        _ => "unknown code (see the UIoT Core error code list)",
    }
}

/// Whether the same request may succeed later without any change.
pub fn is_temporary(code: i64) -> bool {
    matches!(code, 110 | 130 | 150 | 151 | 200 | 999 | 100053 | 100077)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_meanings_and_classes() {
        assert_eq!(meaning(100026), "shadow version conflict");
        assert!(meaning(42).starts_with("unknown code"));
        assert!(is_temporary(130) && is_temporary(100053));
        assert!(!is_temporary(230) && !is_temporary(140));
    }
}
