//! The only way CPU-heavy work runs: a bounded number of jobs at once
//! (`limits.transform_concurrency`) plus a bounded queue (`limits.transform_queue`). When both
//! are full, new work is refused at once (503) instead of piling up; cache hits never come
//! here, so they keep being served under overload.

use crate::error::{Error, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

pub struct Workers {
    /// Running jobs.
    running: Arc<Semaphore>,
    /// Running + waiting jobs.
    admitted: Arc<Semaphore>,
    queued: AtomicUsize,
    concurrency: usize,
}

impl Workers {
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Workers {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            queued: AtomicUsize::new(0),
            concurrency,
        }
    }

    /// Jobs waiting for a worker (not counting running ones).
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.concurrency - self.running.available_permits()
    }

    /// Runs `f` on a blocking thread once a worker slot is free. Refuses with 503 when the
    /// queue is full. Dropping the returned future before it starts gives the slot back.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                ErrorKind::ServiceUnavailable,
                "transform queue is full, retry shortly",
            )
            .with_retry_after(1)
        })?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        let permit = self.running.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let permit = permit.map_err(Error::internal)?;
        #[allow(clippy::disallowed_methods)] // the one sanctioned place
        let joined = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            drop(admitted);
            out
        })
        .await;
        joined.map_err(|e| Error::internal(format!("transform task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn refuses_beyond_the_queue() {
        let w = Arc::new(Workers::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut handles = Vec::new();
        for _ in 0..2 {
            let w = w.clone();
            let rx = rx.clone();
            handles.push(tokio::spawn(async move {
                w.run(move || rx.lock().unwrap().recv().ok()).await
            }));
        }
        // Wait until one runs and one waits.
        for _ in 0..200 {
            if w.running() == 1 && w.queue_depth() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((w.running(), w.queue_depth()), (1, 1));
        let refused = w.run(|| ()).await.unwrap_err();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.retry_after, Some(1));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        assert!(w.run(|| 7).await.unwrap() == 7);
    }
}
