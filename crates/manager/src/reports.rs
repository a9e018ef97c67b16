//! Group commit for Worker reports. When a revision reaches hundreds of Workers their ACKs
//! arrive together; each would otherwise be a write transaction of its own. The writer
//! takes every report waiting when it is free and stores them in one transaction (each
//! still with its own audit record). A report is answered only after the transaction that
//! holds it has committed, so an acknowledged report is never lost; no timer is involved,
//! so a lone report is written at once.

use std::sync::Arc;

use switchyard_store::{Store, StoreError};

use switchyard_api::records::WorkerReport;
use tokio::sync::{mpsc, oneshot};

/// Reports written in one transaction at most.
const MAX_BATCH: usize = 512;

type Job = (WorkerReport, oneshot::Sender<Result<(), StoreError>>);

#[derive(Clone)]
pub struct ReportWriter {
    tx: mpsc::Sender<Job>,
}

impl ReportWriter {
    /// Starts the writer task; it ends when every `ReportWriter` clone is dropped.
    pub fn start(store: Arc<dyn Store>) -> ReportWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, rx));
        ReportWriter { tx }
    }

    /// Stores one report; returns once it is committed.
    pub async fn record(&self, report: WorkerReport) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Database("the report writer has stopped".into());
        self.tx.send((report, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&*store, std::mem::take(&mut batch)).await;
    }
}

async fn write(store: &dyn Store, batch: Vec<Job>) {
    if batch.len() == 1 {
        for (report, done) in batch {
            let _ = done.send(store.record_report(report).await);
        }
        return;
    }
    let reports: Vec<WorkerReport> = batch.iter().map(|(r, _)| r.clone()).collect();
    match store.record_reports(reports).await {
        Ok(()) => {
            for (_, done) in batch {
                let _ = done.send(Ok(()));
            }
        }
        // Nothing of the batch was stored: write each on its own, so one bad report (or a
        // transient failure) gets its own answer and does not fail the others.
        Err(_) => {
            for (report, done) in batch {
                let _ = done.send(store.record_report(report).await);
            }
        }
    }
}
