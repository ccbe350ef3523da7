//! Request bodies, read only once the guard let the request through
//! (access, cross-site checks and the CSRF token all come from the head),
//! within a size cap and a deadline, and copied out of the connection's
//! read buffers as they arrive: a body sent a byte at a time never pins a
//! read buffer per byte.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// The largest request body taken (a form or JSON with ids).
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// How long a client has to send a whole body once its head arrived.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// A whole request body, at most [`MAX_BODY`] bytes, sent within
/// [`BODY_DEADLINE`]; else `413` or `408`.
pub(crate) struct Limited(pub(crate) Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for Limited {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Limited, Response> {
        read(request.into_body(), MAX_BODY, BODY_DEADLINE)
            .await
            .map(Limited)
    }
}

/// Reads `body` into one buffer of its own, refusing more than `limit`
/// bytes or a body not complete within `deadline`.
async fn read(mut body: Body, limit: usize, deadline: Duration) -> Result<Vec<u8>, Response> {
    let collect = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}\n"),
                )
                    .into_response()
            })?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > limit {
                    return Err((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body is over {limit} bytes\n"),
                    )
                        .into_response());
                }
                // Copied: the chunk (and the read buffer it may share) is
                // dropped at once.
                out.extend_from_slice(data);
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(deadline, collect).await {
        Ok(read) => read,
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s\n",
                deadline.as_secs()
            ),
        )
            .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn trickle(chunks: Vec<&'static [u8]>, pause: Duration) -> Body {
        Body::from_stream(stream::unfold(
            chunks.into_iter(),
            move |mut rest| async move {
                let chunk = rest.next()?;
                tokio::time::sleep(pause).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(chunk)),
                    rest,
                ))
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_within_the_limits_is_read_whole() {
        let body = trickle(vec![b"ab", b"c"], Duration::from_secs(1));
        let read = read(body, 3, Duration::from_secs(5)).await.ok().unwrap();
        assert_eq!(read, b"abc");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_size_limit_is_413() {
        let body = trickle(vec![b"ab", b"cd"], Duration::ZERO);
        let refused = read(body, 3, Duration::from_secs(5)).await.err().unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_sent_too_slowly_is_408_at_the_deadline() {
        let body = trickle(vec![b"a"; 100], Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let refused = read(body, 1000, Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
