//! The background jobs: a thread each, owned by the shell's table.
//!
//! The table is the only owner of a job's state. A job's thread tells it
//! how the job ended through a channel (read when the table is asked), and
//! the table cancels a job by closing the job's [`Cancel`] channel. Nothing
//! is shared and locked.

use std::future::Future;

use super::Ended;
use crate::cmd::Cancel;

/// The shell's background jobs.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    last_id: u32,
    jobs: Vec<Job>,
    /// Jobs that ended other than well, since the shell started.
    failures: usize,
}

#[derive(Debug)]
struct Job {
    id: u32,
    text: String,
    /// Closing it cancels the job.
    stop: async_channel::Sender<()>,
    /// How the job ended, sent once by its thread.
    done: async_channel::Receiver<Ended>,
    /// Nothing is ever sent on it: it closes when the job's thread is
    /// over, which can be waited for without taking the word on `done`.
    over: async_channel::Receiver<()>,
    ended: Option<Ended>,
}

impl Jobs {
    /// Starts `run` on a thread of its own, with the job's number and what
    /// cancels it. Returns the number.
    pub(super) fn start(
        &mut self,
        text: String,
        run: impl FnOnce(u32, Cancel) -> Ended + Send + 'static,
    ) -> std::io::Result<u32> {
        let id = self.last_id + 1;
        let (stop, cancel) = async_channel::bounded(1);
        let (report, done) = async_channel::bounded(1);
        let (alive, over) = async_channel::bounded::<()>(1);
        std::thread::Builder::new().name(format!("p2p-job-{id}")).spawn(move || {
            let ended = run(id, Cancel::On(cancel));
            // The table may be gone (the shell is ending): nobody to tell.
            let _ = report.send_blocking(ended);
            drop(alive);
        })?;
        self.last_id = id;
        self.jobs.push(Job { id, text, stop, done, over, ended: None });
        Ok(id)
    }

    /// Notes the jobs that have ended since last asked.
    pub(super) fn refresh(&mut self) {
        for job in self.jobs.iter_mut().filter(|j| j.ended.is_none()) {
            // A thread that died without a word (a panic) failed.
            let ended = match job.done.try_recv() {
                Ok(ended) => ended,
                Err(async_channel::TryRecvError::Closed) => Ended::Failed,
                Err(async_channel::TryRecvError::Empty) => continue,
            };
            job.ended = Some(ended);
            if ended != Ended::Ok {
                self.failures += 1;
            }
        }
    }

    /// One line per job: `[1] running  #DOWNLOAD big.bin peer1`. A job
    /// that has ended is listed once more, then forgotten.
    pub(super) fn list(&mut self) -> Vec<String> {
        self.refresh();
        let lines = self
            .jobs
            .iter()
            .map(|j| format!("[{}] {:<9}  {}", j.id, j.ended.map_or("running", Ended::word), j.text))
            .collect();
        self.jobs.retain(|j| j.ended.is_none());
        lines
    }

    /// The jobs still running: `[1] #DOWNLOAD big.bin peer1`.
    pub(super) fn running(&mut self) -> Vec<String> {
        self.refresh();
        self.jobs.iter().filter(|j| j.ended.is_none()).map(|j| format!("[{}] {}", j.id, j.text)).collect()
    }

    /// Cancels job `id`.
    pub(super) fn cancel(&mut self, id: u32) -> Result<(), String> {
        self.refresh();
        match self.jobs.iter().find(|j| j.id == id) {
            Some(job) if job.ended.is_none() => {
                job.stop.close();
                Ok(())
            }
            Some(_) => Err(format!("job {id} has ended already")),
            None => Err(format!("no job {id} (`jobs` lists them)")),
        }
    }

    /// Cancels every job still running.
    pub(super) fn cancel_all(&mut self) {
        for job in &self.jobs {
            job.stop.close();
        }
    }

    /// Completes when every job started so far has ended. Dropping it
    /// early loses nothing.
    pub(super) fn all_ended(&self) -> impl Future<Output = ()> + use<> {
        let pending: Vec<_> = self.jobs.iter().filter(|j| j.ended.is_none()).map(|j| j.over.clone()).collect();
        async move {
            for over in pending {
                // Never a message: this returns when the channel closes.
                let _ = over.recv().await;
            }
        }
    }

    /// How many jobs ended other than well since the shell started.
    pub(super) fn failures(&mut self) -> usize {
        self.refresh();
        self.failures
    }
}
