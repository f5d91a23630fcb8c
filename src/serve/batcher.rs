//! Dynamic batching: one inference thread per loaded model takes every request waiting for
//! that model and runs them as one forward pass (up to `batch_size` locations).
//!
//! Under load this is what makes the server fast: a tiny-cnn forward over 32 locations
//! costs little more than over one, and concurrent requests no longer fight over the
//! cores with one small matrix product each. When idle, a lone request goes through at
//! once; nothing waits for a batch to fill. Requests wait for their answer without holding
//! a thread. A panic in a forward pass answers 500 to that batch's requests and the thread
//! goes on. The thread ends when the model is unloaded and the last request is answered.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use tokio::sync::oneshot;

use crate::infer::{Answer, Model, input};

use super::error::ApiError;

/// Decoded locations (`[4, S, S, 3]` u8 each) waiting for answers.
struct Job {
    locations: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Answer>, ApiError>>,
}

/// A model and the thread that runs its forward passes.
pub struct Batcher {
    model: Arc<Model>,
    jobs: Sender<Job>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the inference thread of `model`: batches of at most `batch_size` locations,
    /// answers with the `top` most probable classes.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(model: Model, batch_size: usize, top: usize) -> std::io::Result<Batcher> {
        let model = Arc::new(model);
        let (jobs, queue) = channel();
        let worker = Arc::clone(&model);
        std::thread::Builder::new()
            .name("geoexp-infer".into())
            .spawn(move || run(&worker, &queue, batch_size.max(1), top))?;
        Ok(Batcher { model, jobs })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Answers for `locations`, in order, once the inference thread gets to them.
    ///
    /// # Errors
    /// 500 when the forward pass fails or panics.
    pub async fn predict(&self, locations: Vec<Vec<u8>>) -> Result<Vec<Answer>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { locations, reply })
            .map_err(|_| ApiError::internal("the model's inference thread has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the model's inference thread dropped the request"))?
    }
}

/// The inference thread: waits for a job, adds every job already waiting while the batch
/// has room, runs the batch, answers, repeats.
fn run(model: &Model, queue: &Receiver<Job>, batch_size: usize, top: usize) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(queue.try_iter());
        let mut batch = vec![waiting.pop_front().expect("a job is waiting")];
        let mut size = batch[0].locations.len();
        while let Some(next) = waiting.front() {
            if size + next.locations.len() > batch_size {
                break;
            }
            size += next.locations.len();
            batch.extend(waiting.pop_front());
        }
        let all: Vec<&[u8]> = batch
            .iter()
            .flat_map(|j| j.locations.iter().map(Vec::as_slice))
            .collect();
        let result = catch_unwind(AssertUnwindSafe(|| forward(model, &all, batch_size, top)))
            .unwrap_or_else(|payload| {
                let message = super::panic_message(payload.as_ref());
                tracing::error!("a forward pass panicked: {message}");
                Err(ApiError::internal(format!(
                    "the prediction failed unexpectedly ({message}); the server keeps running"
                )))
            });
        match result {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in batch {
                    let mine: Vec<Answer> = answers.by_ref().take(job.locations.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Answers for `locations`, `batch_size` at a time (one job may be larger than a batch).
fn forward(
    model: &Model,
    locations: &[&[u8]],
    batch_size: usize,
    top: usize,
) -> Result<Vec<Answer>, ApiError> {
    let mut answers = Vec::with_capacity(locations.len());
    for chunk in locations.chunks(batch_size) {
        let x = input::batch(
            chunk,
            model.side(),
            &model.info().normalisation,
            model.device(),
        )
        .map_err(|e| ApiError::internal(format!("building the batch: {e}")))?;
        answers.extend(
            model
                .predict(&x, top)
                .map_err(|e| ApiError::internal(format!("predicting: {e}")))?,
        );
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::checkpoint::testing::{SIDE, write_checkpoint};
    use candle_core::Device;

    fn location(seed: usize) -> Vec<u8> {
        let n = 4 * (SIDE * SIDE) as usize * 3;
        (0..n).map(|i| ((i * 31 + seed * 97) % 256) as u8).collect()
    }

    fn close(a: &Answer, b: &Answer) -> bool {
        (a.latitude - b.latitude).abs() < 1e-9 && (a.longitude - b.longitude).abs() < 1e-9
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_checkpoint(dir.path(), "m", 5);
        let batcher =
            Arc::new(Batcher::start(Model::open(&path, &Device::Cpu).unwrap(), 4, 2).unwrap());
        let mut lone = Vec::new();
        for i in 0..6 {
            lone.push(batcher.predict(vec![location(i)]).await.unwrap().remove(0));
        }
        // Sixteen requests of one location and one of nine (more than a batch) at once.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let b = Arc::clone(&batcher);
            tasks.push(tokio::spawn(async move {
                b.predict(vec![location(i % 6)]).await.unwrap()
            }));
        }
        let b = Arc::clone(&batcher);
        let big =
            tokio::spawn(async move { b.predict((0..9).map(|i| location(i % 6)).collect()).await });
        for (i, t) in tasks.into_iter().enumerate() {
            let answers = t.await.unwrap();
            assert_eq!(answers.len(), 1);
            assert!(close(&answers[0], &lone[i % 6]), "request {i}");
        }
        let big = big.await.unwrap().unwrap();
        assert_eq!(big.len(), 9);
        for (i, a) in big.iter().enumerate() {
            assert!(close(a, &lone[i % 6]), "location {i} of the large request");
        }
    }

    #[tokio::test]
    async fn views_of_the_wrong_size_fail_that_request_and_the_thread_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_checkpoint(dir.path(), "m", 5);
        let batcher = Batcher::start(Model::open(&path, &Device::Cpu).unwrap(), 4, 2).unwrap();
        // `input::batch` asserts the size: a panic inside the inference thread.
        let err = batcher.predict(vec![vec![0u8; 5]]).await.unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(err.message.contains("keeps running"), "{}", err.message);
        assert_eq!(batcher.predict(vec![location(1)]).await.unwrap().len(), 1);
    }
}
