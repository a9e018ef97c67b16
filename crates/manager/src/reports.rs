//! Group commit for Worker reports. When a revision reaches hundreds of Workers their ACKs
//! arrive together; each would otherwise be a write transaction of its own. The writer
//! takes every report waiting when it is free and stores them in one transaction (each
//! still with its own audit record). A report is answered only after the transaction that
//! holds it has committed, so an acknowledged report is never lost; no timer is involved,
//! so a lone report is written at once.

use std::sync::Arc;

use switchyard_store::{RevisionProgress, Store, StoreError};

use crate::metrics::ManagerMetrics;

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
    pub fn start(store: Arc<dyn Store>, metrics: Arc<ManagerMetrics>) -> ReportWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, metrics, rx));
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

async fn run(store: Arc<dyn Store>, metrics: Arc<ManagerMetrics>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&*store, &metrics, std::mem::take(&mut batch)).await;
    }
}

async fn write(store: &dyn Store, metrics: &ManagerMetrics, batch: Vec<Job>) {
    if batch.len() > 1 {
        let reports: Vec<WorkerReport> = batch.iter().map(|(r, _)| r.clone()).collect();
        if let Ok(progress) = store.record_reports(reports).await {
            observe(metrics, &progress);
            for (_, done) in batch {
                let _ = done.send(Ok(()));
            }
            return;
        }
        // Nothing of the batch was stored: write each on its own, so one bad report (or a
        // transient failure) gets its own answer and does not fail the others.
    }
    for (report, done) in batch {
        let result = store.record_report(report).await;
        let _ = done.send(result.map(|progress| observe(metrics, &progress)));
    }
}

/// The completeness of each revision the reports ACKed, and its propagation time (commit →
/// last expected swap) when these reports completed it — observed once, by the Manager
/// whose write completed it.
fn observe(metrics: &ManagerMetrics, progress: &[RevisionProgress]) {
    for p in progress {
        let labels = [("env", p.env.clone())];
        metrics
            .completeness
            .get_or_create(&labels)
            .set(p.done as f64 / p.expected.max(1) as f64);
        if p.completed_now {
            let seconds = (p.last_swap - p.committed_at).max(0) as f64 / 1000.0;
            metrics.propagation.get_or_create(&labels).observe(seconds);
        }
    }
}
