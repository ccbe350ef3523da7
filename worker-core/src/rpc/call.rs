//! The typed call: `Quote::call(&client, &request).timeout(d).await`.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::client::RpcClient;
use super::error::CallError;
use bytes::Bytes;

use crate::codec;
use crate::headers::{REPLY_REASON, REPLY_STATUS};
use crate::message::Properties;
use crate::task::Callable;

/// How long a call waits for its reply unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One call of task `T`, to `.await` (after an optional
/// [`timeout`](Call::timeout)); made by the generated `T::call` or
/// [`Call::new`].
///
/// ```no_run
/// # use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use worker_core::{task, ConnectionConfig, Connector, RpcClient, TaskError};
///
/// #[derive(Serialize, Deserialize)]
/// struct QuoteRequest { sku: String }
/// #[derive(Serialize, Deserialize)]
/// struct Quote { cents: u64 }
///
/// #[task(queue = "quotes")]
/// async fn price(req: QuoteRequest) -> Result<Quote, TaskError> {
///     Ok(Quote { cents: req.sku.len() as u64 * 100 })
/// }
///
/// # async fn run() -> Result<(), worker_core::CallError> {
/// let client = RpcClient::new(Connector::new(ConnectionConfig::from_env()));
/// let quote = Price::call(&client, &QuoteRequest { sku: "A-1".into() })
///     .timeout(Duration::from_secs(5))
///     .await?;
/// println!("{} cents", quote.cents);
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing until awaited"]
pub struct Call<'c, T> {
    client: &'c RpcClient,
    body: Result<Vec<u8>, codec::EncodeError>,
    timeout: Duration,
    task: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Call<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("task", &std::any::type_name::<T>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'c, T: Callable> Call<'c, T> {
    /// A call of `T` with `payload` through `client`, waiting
    /// [`DEFAULT_CALL_TIMEOUT`] for the reply.
    pub fn new(client: &'c RpcClient, payload: &T::Payload) -> Self {
        Call {
            client,
            body: codec::encode_json(payload),
            timeout: DEFAULT_CALL_TIMEOUT,
            task: PhantomData,
        }
    }

    /// How long to wait for the reply, sending included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<'c, T> IntoFuture for Call<'c, T>
where
    T: Callable,
    T::Output: DeserializeOwned,
{
    type Output = Result<T::Output, CallError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'c>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let body = self
                .body
                .map_err(|e| CallError::Broker(crate::Error::Encode(e)))?;
            let reply = self
                .client
                .call_raw(T::NAME, T::QUEUE, body, self.timeout)
                .await?;
            reply.decode()
        })
    }
}

/// A reply as it arrived: a value, or the failure the worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// [`REPLY_STATUS`]: none (a success from any AMQP server), `ok`,
    /// `failed` or `parked`.
    pub status: Option<String>,
    /// [`REPLY_REASON`] of a failure.
    pub reason: Option<String>,
    /// The content type (JSON when absent).
    pub content_type: Option<String>,
    /// The body: the value, or the error message as a JSON string.
    pub body: Bytes,
}

impl Reply {
    /// The reply carried by a message with `properties` and `body`.
    pub fn new(properties: &Properties, body: Bytes) -> Reply {
        let headers = properties.headers();
        Reply {
            status: headers.get_str(REPLY_STATUS),
            reason: headers.get_str(REPLY_REASON),
            content_type: properties.content_type().map(str::to_owned),
            body,
        }
    }

    /// The value, or the failure as a [`CallError`], as a caller sees it.
    ///
    /// # Errors
    ///
    /// [`CallError::Failed`] or [`CallError::Parked`] for a failure reply,
    /// [`CallError::Decode`] for a value that is not an `O`.
    pub fn decode<O: DeserializeOwned>(&self) -> Result<O, CallError> {
        decode_reply(self)
    }
}

/// The value of a reply, or the failure it reports.
fn decode_reply<O: DeserializeOwned>(reply: &Reply) -> Result<O, CallError> {
    let message = || {
        codec::decode::<String>(reply.content_type.as_deref(), &reply.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&reply.body).into_owned())
    };
    let reason = || reply.reason.clone().unwrap_or_default();
    match reply.status.as_deref() {
        None | Some("ok") => codec::decode(reply.content_type.as_deref(), &reply.body)
            .map_err(|e| CallError::Decode(e.to_string())),
        Some("failed") => Err(CallError::Failed {
            reason: reason(),
            message: message(),
        }),
        Some(_) => Err(CallError::Parked {
            reason: reason(),
            message: message(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<&str>, body: &str) -> Reply {
        Reply {
            status: status.map(str::to_owned),
            reason: status.map(|_| "permanent".to_owned()),
            content_type: Some(codec::JSON.to_owned()),
            body: body.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn a_reply_without_status_is_a_value() {
        assert_eq!(decode_reply::<u32>(&reply(None, "7")).unwrap(), 7);
        assert_eq!(decode_reply::<u32>(&reply(Some("ok"), "7")).unwrap(), 7);
    }

    #[test]
    fn failure_replies_become_typed_errors() {
        let failed = decode_reply::<u32>(&reply(Some("failed"), "\"declined\""));
        assert!(
            matches!(&failed, Err(CallError::Failed { message, .. }) if message == "declined"),
            "{failed:?}"
        );
        let parked = decode_reply::<u32>(&reply(Some("parked"), "\"bad json\""));
        assert!(
            matches!(parked, Err(CallError::Parked { .. })),
            "{parked:?}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_decode_error() {
        let wrong = decode_reply::<u32>(&reply(None, "\"seven\""));
        assert!(matches!(wrong, Err(CallError::Decode(_))), "{wrong:?}");
    }
}
