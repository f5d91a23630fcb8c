//! Training: optimisers, schedules, losses and metrics (being written).

pub mod loss;
pub mod metrics;
pub mod optimizer;
pub mod predict;
pub mod scheduler;
