//! The worker's side of a call: once the delivery's outcome is known,
//! answer the caller (with the value the handler left in its
//! [`ReplySlot`]) before the settlement.

use bytes::Bytes;

use crate::codec;
use crate::headers::{REPLY_REASON, REPLY_STATUS};
use crate::message::{Outgoing, Properties};
use crate::metric_names::REPLIES;
use crate::middleware::{return_after_backoff, Job, Outcome};
use crate::task::ReplySlot;

/// The reply a request gets for an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The handler succeeded: its JSON value.
    Value(Bytes),
    /// The request failed for good: the status (`failed` or `parked`), the
    /// reason and the error message.
    Failure {
        /// `failed` or `parked`.
        status: &'static str,
        /// The park reason, or `discarded`.
        reason: String,
        /// The error message.
        message: String,
    },
}

/// The [`REPLY_STATUS`] of a request parked with `reason`: `failed` when
/// the handler itself failed for good, `parked` for every other reason.
fn status_for(reason: &str) -> &'static str {
    match reason {
        "permanent" | "discarded" => "failed",
        _ => "parked",
    }
}

/// What the caller of a job with `outcome` is told, if anything: nothing
/// while the request is still on its way (redelivered through a delay
/// tier, quarantined, returned to its queue).
pub fn answer_for(outcome: &Outcome, slot: &ReplySlot) -> Option<Answer> {
    let failure = |reason: &str, message: String| Answer::Failure {
        status: status_for(reason),
        reason: reason.to_owned(),
        message,
    };
    match outcome {
        Outcome::Succeeded => Some(Answer::Value(
            slot.value().unwrap_or_else(|| Bytes::from_static(b"null")),
        )),
        Outcome::Discarded(message) => Some(failure("discarded", message.clone())),
        Outcome::Parked { reason, attempt } => Some(failure(
            reason,
            slot.failure()
                .unwrap_or_else(|| format!("parked after attempt {attempt}")),
        )),
        // Dead-lettered by the settlement: it lands in parking too.
        Outcome::Failed(f) => Some(failure(f.park_reason(), f.message.clone())),
        _ => None,
    }
}

/// The reply message for `answer` to `reply_to`.
fn reply_message(
    reply_to: &str,
    correlation_id: Option<&str>,
    answer: Answer,
) -> Result<Outgoing, crate::Error> {
    let mut props = Properties::default().with_content_type(codec::JSON);
    if let Some(id) = correlation_id {
        props = props.with_correlation_id(id)?;
    }
    let body = match answer {
        Answer::Value(body) => {
            props.headers_mut().insert(REPLY_STATUS, "ok");
            body
        }
        Answer::Failure {
            status,
            reason,
            message,
        } => {
            props
                .headers_mut()
                .insert(REPLY_STATUS, status)
                .insert(REPLY_REASON, reason.as_str());
            Bytes::from(codec::encode_json(&message)?)
        }
    };
    let mut message = Outgoing::to_queue(reply_to, props, body);
    // Before 4.2 RabbitMQ returns every mandatory publish to a direct
    // reply-to name, delivered or not; from 4.2 none (see the module docs).
    message.mandatory = false;
    Ok(message)
}

/// Answers the caller of `job`, if the request has a `reply_to`, before
/// the delivery is settled; returns the outcome to settle.
///
/// After a success the reply must be published (confirmed) before the ack:
/// when it cannot be, the request goes back to its queue
/// ([`Outcome::Requeue`] after the task's backoff) and runs again, as any
/// delivery whose outcome could not be recorded. A failure reply that
/// cannot be published changes nothing: the request is parked already,
/// and the caller's timeout tells it.
pub async fn answer(job: &Job, outcome: Outcome) -> Outcome {
    let delivery = job.delivery();
    let Some(reply_to) = delivery.properties.reply_to().filter(|r| !r.is_empty()) else {
        return outcome;
    };
    let Some(answer) = answer_for(&outcome, job.reply_slot()) else {
        return outcome;
    };
    let succeeded = matches!(answer, Answer::Value(_));
    let status = match &answer {
        Answer::Value(_) => "ok",
        Answer::Failure { status, .. } => status,
    };
    let task = job.spec().name;
    let sent = match reply_message(reply_to, delivery.properties.correlation_id(), answer) {
        Ok(message) => job.transport().publish(message).await,
        Err(e) => Err(e),
    };
    let counted = if sent.is_ok() { status } else { "unsent" };
    metrics::counter!(REPLIES, "task" => task, "status" => counted).increment(1);
    match sent {
        Ok(()) => outcome,
        Err(e) if succeeded => {
            tracing::error!(task, error = %e, "could not publish the reply to {reply_to}: the request goes back to its queue and will run again");
            return_after_backoff(job).await
        }
        Err(e) => {
            tracing::warn!(task, error = %e, "could not publish the failure reply to {reply_to}; the caller will time out");
            outcome
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::{Failure, FailureCause};
    use crate::task::FailureKind;

    #[test]
    fn a_success_without_a_value_replies_null() {
        let slot = ReplySlot::default();
        assert_eq!(
            answer_for(&Outcome::Succeeded, &slot),
            Some(Answer::Value(Bytes::from_static(b"null")))
        );
        slot.set(&42).unwrap();
        assert_eq!(
            answer_for(&Outcome::Succeeded, &slot),
            Some(Answer::Value(Bytes::from_static(b"42")))
        );
    }

    #[test]
    fn a_permanent_failure_is_failed_and_other_parks_are_parked() {
        let slot = ReplySlot::default();
        slot.note_failure("card declined");
        let permanent = Outcome::Parked {
            reason: "permanent",
            attempt: 1,
        };
        assert_eq!(
            answer_for(&permanent, &slot),
            Some(Answer::Failure {
                status: "failed",
                reason: "permanent".into(),
                message: "card declined".into()
            })
        );
        let exhausted = Outcome::Parked {
            reason: "exhausted",
            attempt: 5,
        };
        assert!(matches!(
            answer_for(&exhausted, &slot),
            Some(Answer::Failure {
                status: "parked",
                ..
            })
        ));
        let failed = Outcome::Failed(Failure::new(
            FailureKind::Permanent,
            FailureCause::Decode,
            "bad json",
            1,
        ));
        assert!(matches!(
            answer_for(&failed, &slot),
            Some(Answer::Failure { status: "parked", reason, .. }) if reason == "undecodable"
        ));
    }

    #[test]
    fn a_request_still_on_its_way_gets_no_reply() {
        let slot = ReplySlot::default();
        for outcome in [
            Outcome::Requeue,
            Outcome::Quarantined { attempts: 2 },
            Outcome::Redelivered {
                tier: std::time::Duration::from_secs(5),
                attempt: 1,
            },
        ] {
            assert_eq!(answer_for(&outcome, &slot), None, "{outcome:?}");
        }
    }

    #[test]
    fn a_reply_is_never_mandatory_and_copies_the_correlation_id() {
        let m = reply_message(
            "amq.rabbitmq.reply-to.abc",
            Some("c-1"),
            Answer::Value(Bytes::from_static(b"1")),
        )
        .unwrap();
        assert!(!m.mandatory);
        assert_eq!(m.exchange, "");
        assert_eq!(m.routing_key, "amq.rabbitmq.reply-to.abc");
        assert_eq!(m.properties.correlation_id(), Some("c-1"));
        assert_eq!(m.properties.content_type(), Some(codec::JSON));
    }
}
