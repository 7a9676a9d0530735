//! Request extractors whose rejections are problem+json with a stable code.
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::{FieldError, Problem};

/// A JSON body. 415 when it is not declared as JSON, 413 when it is too large, 400 when it is not
/// valid JSON, 422 (naming the field) when it does not fit the expected shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Bad Request",
                    "the request body could not be read",
                )
            }
        })?;
        parse(&bytes).map(Json)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { String::new() } else { path };
                Problem::validation(vec![FieldError {
                    field,
                    code: "invalid",
                    message: strip_position(&inner),
                }])
            }
            _ => Problem::malformed_json(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    // Anything after the value (`{} {}`) is a syntax error too.
    de.end()
        .map_err(|e| Problem::malformed_json(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json appends "at line 1 column 9" to data errors; the field path says more.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        amount: i64,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        let p = parse::<Body>(b"{\"name\": ").unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (400, "malformed_json"));

        let p = parse::<Body>(br#"{"name": "x", "amount": "ten"}"#).unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (422, "validation_failed"));
        assert_eq!(p.errors[0].field, "amount");

        let p = parse::<Body>(br#"{"name": "x", "amount": 1, "extra": true}"#).unwrap_err();
        assert_eq!(p.status.as_u16(), 422);
        assert!(p.errors[0].message.contains("extra"), "{:?}", p.errors);

        assert!(parse::<Body>(br#"{"name": "x", "amount": 1}"#).is_ok());
    }
}
