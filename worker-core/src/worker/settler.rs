//! One task per channel that settles deliveries, coalescing acks where safe.
//!
//! Why coalesce? Every `basic.ack` is a frame the broker must process. When
//! handlers finish in delivery order, one `basic.ack(tag, multiple = true)`
//! can settle a whole run of them.
//!
//! When is it safe? `multiple = true` acks *every* unsettled tag up to `tag`
//! on the channel. The settler therefore tracks every tag the consumer has
//! taken, in order, and coalesces only a run that starts at the oldest
//! unsettled tag and consists entirely of deliveries whose outcome called
//! for an ack. Ready acks behind a still-running delivery are sent one by
//! one (never delayed), and nacks and rejects are always sent singly. Each
//! channel has exactly one consumer, so tags reach the settler in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::settle::Settlement;
use crate::transport::Transport;

/// How many commands the settler takes before it sends what it can.
const BATCH: usize = 512;

enum Command {
    Track(u64),
    Settle(u64, Settlement),
    Flush(oneshot::Sender<()>),
}

/// A handle to a channel's settler task; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Settler {
    tx: mpsc::UnboundedSender<Command>,
}

impl Settler {
    /// Starts the settler task for a channel's transport.
    pub(crate) fn spawn(transport: Arc<dyn Transport>) -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(transport, rx));
        Settler { tx }
    }

    /// Records that the consumer took `tag`; call before its handler starts.
    pub(crate) fn track(&self, tag: u64) {
        let _ = self.tx.send(Command::Track(tag));
    }

    /// Settles `tag` (exactly once per tracked tag).
    pub(crate) fn settle(&self, tag: u64, settlement: Settlement) {
        let _ = self.tx.send(Command::Settle(tag, settlement));
    }

    /// Resolves once every settlement sent before this call went out.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Running,
    AckReady,
}

async fn run(transport: Arc<dyn Transport>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut outstanding: BTreeMap<u64, Slot> = BTreeMap::new();
    let mut sending = FuturesUnordered::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let command = tokio::select! {
            command = rx.recv() => command,
            Some(()) = sending.next(), if !sending.is_empty() => {
                if sending.is_empty() {
                    waiting.drain(..).for_each(|w| { let _ = w.send(()); });
                }
                continue;
            }
        };
        let Some(first) = command else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        for command in batch {
            match command {
                Command::Track(tag) => {
                    outstanding.insert(tag, Slot::Running);
                }
                Command::Settle(tag, Settlement::Ack) => {
                    if let Some(slot) = outstanding.get_mut(&tag) {
                        *slot = Slot::AckReady;
                    }
                }
                Command::Settle(tag, other) => {
                    if outstanding.remove(&tag).is_some() {
                        let t = transport.clone();
                        sending.push(Box::pin(async move {
                            if let Err(e) = other.apply(&*t, tag).await {
                                tracing::debug!(error = %e, cause = %e.source, "settlement dropped; the broker will redeliver");
                            }
                        }) as futures_util::future::BoxFuture<'static, ()>);
                    }
                }
                Command::Flush(done) => waiting.push(done),
            }
        }
        for (tag, multiple) in ready_acks(&mut outstanding) {
            let t = transport.clone();
            sending.push(Box::pin(async move {
                if let Err(e) = t.ack(tag, multiple).await {
                    tracing::debug!(error = %e, "ack dropped; the broker will redeliver");
                }
            }));
        }
        // Each ack future queues its frame on its first poll; poll them now.
        while let Some(Some(())) = futures_util::FutureExt::now_or_never(sending.next()) {}
        if sending.is_empty() {
            waiting.drain(..).for_each(|w| {
                let _ = w.send(());
            });
        }
    }
    while sending.next().await.is_some() {}
    waiting.drain(..).for_each(|w| {
        let _ = w.send(());
    });
}

/// Removes every ack-ready tag from `outstanding` and says how to ack it:
/// the run at the head as one `(last, multiple = true)` (or a single ack
/// when the run has one tag), the rest one by one.
fn ready_acks(outstanding: &mut BTreeMap<u64, Slot>) -> Vec<(u64, bool)> {
    let mut acks = Vec::new();
    let mut head_run = 0usize;
    let mut last = 0u64;
    for (tag, slot) in outstanding.iter() {
        if *slot != Slot::AckReady {
            break;
        }
        head_run += 1;
        last = *tag;
    }
    if head_run > 0 {
        acks.push((last, head_run > 1));
        *outstanding = outstanding.split_off(&(last + 1));
    }
    let singles: Vec<u64> = outstanding
        .iter()
        .filter(|(_, s)| **s == Slot::AckReady)
        .map(|(t, _)| *t)
        .collect();
    for tag in singles {
        outstanding.remove(&tag);
        acks.push((tag, false));
    }
    acks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u64, Slot)]) -> BTreeMap<u64, Slot> {
        entries.iter().copied().collect()
    }

    #[test]
    fn a_ready_run_at_the_head_is_one_multiple_ack() {
        let mut t = table(&[
            (1, Slot::AckReady),
            (2, Slot::AckReady),
            (3, Slot::AckReady),
            (4, Slot::Running),
        ]);
        assert_eq!(ready_acks(&mut t), vec![(3, true)]);
        assert_eq!(t, table(&[(4, Slot::Running)]));
    }

    #[test]
    fn ready_acks_behind_a_running_delivery_go_singly_and_never_cover_it() {
        let mut t = table(&[(1, Slot::Running), (2, Slot::AckReady), (3, Slot::AckReady)]);
        assert_eq!(ready_acks(&mut t), vec![(2, false), (3, false)]);
        assert_eq!(t, table(&[(1, Slot::Running)]));
    }

    #[test]
    fn a_single_ready_head_is_a_plain_ack() {
        let mut t = table(&[
            (7, Slot::AckReady),
            (9, Slot::Running),
            (10, Slot::AckReady),
        ]);
        assert_eq!(ready_acks(&mut t), vec![(7, false), (10, false)]);
        assert_eq!(t, table(&[(9, Slot::Running)]));
    }

    #[test]
    fn nothing_ready_sends_nothing() {
        let mut t = table(&[(1, Slot::Running)]);
        assert!(ready_acks(&mut t).is_empty());
        assert_eq!(t.len(), 1);
    }

    /// Records each operation when its future is first polled (as lapin
    /// queues a frame), then stays pending once, like a real round trip.
    #[derive(Default)]
    struct Frames(std::sync::Mutex<Vec<String>>);

    impl Frames {
        fn op(
            &self,
            frame: String,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::transport::SettleError>>
        {
            Box::pin(async move {
                self.0.lock().unwrap().push(frame);
                tokio::task::yield_now().await;
                Ok(())
            })
        }
    }

    impl Transport for Frames {
        fn ack(
            &self,
            tag: u64,
            multiple: bool,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::transport::SettleError>>
        {
            self.op(format!("ack {tag} multiple={multiple}"))
        }
        fn nack(
            &self,
            tag: u64,
            _: bool,
            requeue: bool,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::transport::SettleError>>
        {
            self.op(format!("nack {tag} requeue={requeue}"))
        }
        fn reject(
            &self,
            tag: u64,
            requeue: bool,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::transport::SettleError>>
        {
            self.op(format!("reject {tag} requeue={requeue}"))
        }
        fn publish(
            &self,
            _: crate::message::Outgoing,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::Error>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A `multiple` ack may cover a tag settled otherwise just before (it is
    /// no longer outstanding), so that settlement's frame must go out first:
    /// otherwise the broker would ack a message meant for the dead-letter
    /// route or the queue.
    #[tokio::test]
    async fn a_multiple_ack_goes_out_after_the_rejects_and_nacks_it_covers() {
        let frames = Arc::new(Frames::default());
        let settler = Settler::spawn(frames.clone());
        for tag in 1..=7 {
            settler.track(tag);
        }
        settler.settle(2, Settlement::DeadLetter);
        settler.settle(4, Settlement::Requeue);
        settler.settle(6, Settlement::Return);
        for tag in [1, 3, 5, 7] {
            settler.settle(tag, Settlement::Ack);
        }
        settler.flush().await;
        assert_eq!(
            *frames.0.lock().unwrap(),
            [
                "reject 2 requeue=false",
                "reject 4 requeue=true",
                "nack 6 requeue=true",
                "ack 7 multiple=true"
            ]
        );
    }
}
