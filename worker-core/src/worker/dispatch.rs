//! From a delivery to its settlement: the one path that the worker's
//! consumer and the testkit's harness both run, so a unit test runs
//! exactly what the worker runs.
//!
//! [`Tasks::pick`] finds the task a delivery names (by its `type`
//! property; a name no task on the queue has is flagged, and the handler
//! service parks the message as `unknown-task`), [`Tasks::job`] builds the
//! [`Job`], and [`dispatch`] runs it through that task's middleware stack
//! and answers the [`Settlement`] its outcome calls for, after replying to
//! a caller that waits for it ([`rpc::reply::answer`](crate::rpc::reply::answer)).

use std::sync::Arc;

use tower::ServiceExt;

use super::settle::Settlement;
use crate::error::Error;
use crate::message::Delivery;
use crate::middleware::{BoxJobService, Job, Outcome};
use crate::runtime::Runtime;
use crate::task::StateMap;
use crate::topology::TaskSpec;
use crate::transport::Transport;

/// The tasks one queue serves, each with its middleware stack; the first
/// one takes messages that name no task.
#[derive(Clone)]
pub struct Tasks {
    tasks: Vec<(Arc<TaskSpec>, BoxJobService)>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tasks.iter().map(|(s, _)| s.name).collect();
        f.debug_struct("Tasks").field("names", &names).finish()
    }
}

impl Tasks {
    /// A queue served by one task, run through `stack`.
    pub fn one(spec: Arc<TaskSpec>, stack: BoxJobService) -> Tasks {
        Tasks {
            tasks: vec![(spec, stack)],
        }
    }

    /// The first task's spec (the queue's own settings).
    ///
    /// # Panics
    ///
    /// When the queue has no task, which the worker never builds.
    pub fn first(&self) -> &Arc<TaskSpec> {
        &self.tasks[0].0
    }

    /// Every task's spec.
    pub fn specs(&self) -> impl Iterator<Item = &Arc<TaskSpec>> {
        self.tasks.iter().map(|(spec, _)| spec)
    }

    /// No tasks yet; [`push`](Tasks::push) them before the first pick.
    pub(crate) fn empty() -> Tasks {
        Tasks { tasks: Vec::new() }
    }

    pub(crate) fn push(&mut self, spec: Arc<TaskSpec>, stack: BoxJobService) {
        self.tasks.push((spec, stack));
    }

    /// The task for a delivery, by its `type` property, and the name it
    /// gave when no task on this queue has it.
    pub fn pick(&self, delivery: &Delivery) -> (&Arc<TaskSpec>, &BoxJobService, Option<String>) {
        let (first_spec, first_svc) = &self.tasks[0];
        match delivery.properties.kind() {
            None | Some("") => (first_spec, first_svc, None),
            Some(name) => match self.tasks.iter().find(|(spec, _)| spec.name == name) {
                Some((spec, svc)) => (spec, svc, None),
                None => (first_spec, first_svc, Some(name.to_owned())),
            },
        }
    }

    /// The job for `delivery` and the stack that runs it.
    pub fn job(
        &self,
        delivery: Arc<Delivery>,
        transport: Arc<dyn Transport>,
        runtime: Arc<Runtime>,
    ) -> (Job, BoxJobService) {
        let (spec, svc, unknown) = self.pick(&delivery);
        let job = Job::new(delivery, spec.clone(), transport, runtime);
        let job = match unknown {
            Some(name) => job.with_unknown_task(name),
            None => job,
        };
        (job, svc.clone())
    }
}

/// Runs `delivery` through the stack of the task it names; what became of
/// it, and the settlement that calls for.
pub async fn dispatch(
    tasks: &Tasks,
    delivery: Arc<Delivery>,
    transport: Arc<dyn Transport>,
    runtime: Arc<Runtime>,
) -> (Outcome, Settlement) {
    let (job, stack) = tasks.job(delivery, transport, runtime);
    let outcome = stack
        .oneshot(job.clone())
        .await
        .unwrap_or_else(|never| match never {});
    // A caller waiting on `reply_to` hears the outcome before the request
    // is settled; a reply that cannot be sent turns a success into a requeue.
    let outcome = crate::rpc::reply::answer(&job, outcome).await;
    let settlement = Settlement::for_outcome(&outcome);
    (outcome, settlement)
}

/// Checks that `state` holds every type of shared state `task` needs.
///
/// # Errors
///
/// [`Error::Config`] naming the first missing type.
pub fn check_state(
    task: &str,
    required: &[(std::any::TypeId, &'static str)],
    state: &StateMap,
) -> Result<(), Error> {
    match required.iter().find(|(id, _)| !state.contains(*id)) {
        None => Ok(()),
        Some((_, name)) => Err(Error::Config(format!(
            "task {task} needs shared state of type {name}; add it with Worker::state(...)"
        ))),
    }
}
