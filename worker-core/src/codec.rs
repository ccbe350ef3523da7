//! Payload encoding, chosen by `content_type`.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// `application/json`, the default.
pub const JSON: &str = "application/json";
/// `application/msgpack` (with the `msgpack` feature).
pub const MSGPACK: &str = "application/msgpack";

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body was empty.
    #[error("empty body: expected a {content_type} payload")]
    Empty {
        /// The content type that was expected.
        content_type: String,
    },
    /// The content type is not one this worker can read.
    #[error("unsupported content type {0:?}: publish with application/json{msgpack}", msgpack = if cfg!(feature = "msgpack") { " or application/msgpack" } else { "" })]
    UnsupportedContentType(String),
    /// The bytes are not valid for the content type, or not the payload's shape.
    #[error("cannot decode {content_type} payload: {message}")]
    Invalid {
        /// The content type used.
        content_type: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// Why a payload could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode payload as {content_type}: {message}")]
pub struct EncodeError {
    content_type: &'static str,
    message: String,
}

/// Decodes a payload; a missing content type means JSON.
///
/// ```
/// use worker_core::codec;
///
/// let n: u32 = codec::decode(Some("application/json"), b"42").unwrap();
/// assert_eq!(n, 42);
/// assert!(codec::decode::<u32>(Some("text/plain"), b"42").is_err());
/// ```
pub fn decode<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, DecodeError> {
    let ct = content_type.unwrap_or(JSON);
    let essence = ct.split(';').next().unwrap_or("").trim();
    if body.is_empty() {
        return Err(DecodeError::Empty {
            content_type: essence.to_owned(),
        });
    }
    match essence {
        JSON | "text/json" => serde_json::from_slice(body).map_err(|e| DecodeError::Invalid {
            content_type: JSON,
            message: e.to_string(),
        }),
        #[cfg(feature = "msgpack")]
        MSGPACK | "application/x-msgpack" => {
            rmp_serde::from_slice(body).map_err(|e| DecodeError::Invalid {
                content_type: MSGPACK,
                message: e.to_string(),
            })
        }
        other => Err(DecodeError::UnsupportedContentType(other.to_owned())),
    }
}

/// Encodes a payload as JSON.
pub fn encode_json<T: Serialize + ?Sized>(payload: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(payload).map_err(|e| EncodeError {
        content_type: JSON,
        message: e.to_string(),
    })
}

/// Encodes a payload as MessagePack.
#[cfg(feature = "msgpack")]
pub fn encode_msgpack<T: Serialize + ?Sized>(payload: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(payload).map_err(|e| EncodeError {
        content_type: MSGPACK,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Email {
        to: String,
    }

    #[test]
    fn missing_content_type_means_json_and_parameters_are_ignored() {
        let e: Email = decode(None, br#"{"to":"a@b"}"#).unwrap();
        assert_eq!(e.to, "a@b");
        let e: Email = decode(Some("application/json; charset=utf-8"), br#"{"to":"c"}"#).unwrap();
        assert_eq!(e.to, "c");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = decode::<Email>(None, b"").unwrap_err();
        assert!(err.to_string().contains("empty body"), "{err}");
        let err = decode::<Email>(None, b"{nope").unwrap_err();
        assert!(err.to_string().contains("cannot decode"), "{err}");
        let err = decode::<Email>(None, br#"{"from":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `to`"), "{err}");
        let err = decode::<Email>(Some("text/xml"), b"<a/>").unwrap_err();
        assert!(
            err.to_string().contains("unsupported content type"),
            "{err}"
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_round_trip() {
        #[derive(serde::Serialize)]
        struct Out {
            to: &'static str,
        }
        let bytes = encode_msgpack(&Out { to: "m" }).unwrap();
        let e: Email = decode(Some(MSGPACK), &bytes).unwrap();
        assert_eq!(e.to, "m");
    }
}
