//! Concurrent reads of one key group (one Redis Cluster slot) merged into one MGET. No timer: a read that finds
//! no batch open opens one and yields once, so every request the runtime has ready adds
//! its keys; then one MGET goes for all, and each read gets its own part. A read asked
//! once that MGET is on its way opens the next batch (reads are never held back behind a
//! command in flight). Under load this turns N commands (N frames to encode and parse,
//! N replies, N wake-ups of fred's connection task) into one; a lone read pays one
//! yield. An MGET is atomic, so a merged read sees one moment of Redis, as each alone
//! would have.
use std::sync::Mutex;

use fred::{clients::Client, prelude::*, types::Key};
use tokio::sync::oneshot;

type Reply = Result<Vec<Option<String>>, fred::error::Error>;

#[derive(Default)]
pub struct Combiner {
    open: Mutex<Option<Batch>>,
}

#[derive(Default)]
struct Batch {
    keys: Vec<Key>,
    /// Each joined read: how many keys it added, and where its part goes.
    joined: Vec<(usize, oneshot::Sender<Reply>)>,
}

impl Combiner {
    /// The values of `keys`, read with whatever other reads of this node come along.
    pub async fn mget(&self, client: &Client, keys: Vec<&str>) -> Reply {
        let mine = keys.len();
        let mut own: Vec<Key> = keys.into_iter().map(Key::from).collect();
        let joined = {
            let mut open = self.lock();
            match open.as_mut() {
                Some(batch) => {
                    let (tx, rx) = oneshot::channel();
                    batch.keys.append(&mut own);
                    batch.joined.push((mine, tx));
                    Some(rx)
                }
                None => {
                    *open = Some(Batch::default());
                    None
                }
            }
        };
        if let Some(rx) = joined {
            return rx.await.unwrap_or_else(|_| Err(canceled()));
        }
        // This read leads the batch: the requests ready now join it meanwhile.
        let mut guard = Leading {
            combiner: self,
            client,
            done: false,
        };
        tokio::task::yield_now().await;
        guard.done = true;
        let batch = self.lock().take().unwrap_or_default();
        if batch.joined.is_empty() {
            // Boxed: fred's command future is about 4.8 KB, and inline it would make
            // every read's future that large, merged ones included (they only wait on
            // a oneshot), and be moved with it.
            return Box::pin(client.mget(own)).await;
        }
        // Sent from a task of its own, so a leader whose request is dropped meanwhile
        // (a timeout) cannot take the others' answers with it.
        let (tx, rx) = oneshot::channel();
        own.extend(batch.keys);
        let mut joined = Vec::with_capacity(batch.joined.len() + 1);
        joined.push((mine, tx));
        joined.extend(batch.joined);
        tokio::spawn(send(client.clone(), own, joined));
        rx.await.unwrap_or_else(|_| Err(canceled()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Batch>> {
        // A std Mutex, because no lock is held across an await.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One MGET for a batch, each part to its read.
async fn send(client: Client, keys: Vec<Key>, joined: Vec<(usize, oneshot::Sender<Reply>)>) {
    match client.mget::<Vec<Option<String>>, _>(keys).await {
        Ok(values) => {
            let mut values = values.into_iter();
            for (n, tx) in joined {
                let _ = tx.send(Ok(values.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for (_, tx) in joined {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

/// A leader dropped while its batch is open: the batch still goes.
struct Leading<'a> {
    combiner: &'a Combiner,
    client: &'a Client,
    done: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(batch) = self.combiner.lock().take()
            && !batch.joined.is_empty()
        {
            tokio::spawn(send(self.client.clone(), batch.keys, batch.joined));
        }
    }
}

/// A read whose batch went away unanswered: like a timeout, slow rather than lost
/// (`CacheError::is_loss`).
fn canceled() -> fred::error::Error {
    fred::error::Error::new(fred::error::ErrorKind::Timeout, "merged read dropped")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cached read builds this future and moves it into its `join_all`: fred's
    /// command future (about 4.8 KB) inline made it 5 KB, and that memmove was 2-4% of
    /// a replayed read's CPU.
    #[tokio::test]
    async fn a_read_future_stays_small() {
        let client = fred::types::Builder::default_centralized()
            .build()
            .expect("a client (not connected)");
        let combiner = Combiner::default();
        let read = combiner.mget(&client, vec!["a"]);
        assert!(
            std::mem::size_of_val(&read) <= 512,
            "{}",
            std::mem::size_of_val(&read)
        );
    }
}
