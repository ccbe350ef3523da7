use serde::{Deserialize, Serialize};
use worker_core::{task, Task, TaskContext, TaskError};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    cents: u64,
}

// The function is named like its payload: `type_name` names the task type.
#[task(queue = "billing", type_name = "ChargeTask")]
async fn charge(ctx: TaskContext, c: Charge) -> Result<(), TaskError> {
    let _ = (ctx, c.cents);
    Ok(())
}

fn main() {
    assert_eq!(ChargeTask::QUEUE, "billing");
    let _ = <ChargeTask as Task>::NAME;
    let _payload: <ChargeTask as Task>::Payload = Charge { cents: 1 };
}
