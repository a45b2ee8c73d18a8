//! Replaying dead letters: each entry is delivered again, in id order, to
//! its plugin as loaded now; one that succeeds is removed, one that fails
//! again is kept with the new failure, one whose plugin is not loaded is
//! kept as it is.
//!
//! How one delivery is made is the caller's (the host's workers, or a fake
//! in tests). The store's changes are written in batches (up to
//! [`BATCH`] entries or [`FLUSH_AFTER`], whichever comes first), so a
//! replay of many entries does not sync the file once per entry; a crash
//! in between leaves at most one batch of delivered entries in the store,
//! to be delivered again by the next replay.

use std::future::Future;
use std::time::{Duration, Instant};

use super::dead_letters::{timestamp_now, DeadLetterError, DeadLetters, FailedAgain};
use crate::{Event, FailureClass, Outcome};

/// Entries read, and changes written, at a time.
const BATCH: u32 = 100;

/// The longest a delivered entry waits for its removal to be written.
const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries delivered and removed.
    pub delivered: u64,
    /// Entries that failed again (or no longer read as an event), kept.
    pub failed_again: u64,
    /// Entries whose plugin is not loaded, kept.
    pub no_plugin: u64,
}

impl ReplayReport {
    /// Entries replayed, whatever became of them.
    pub fn total(&self) -> u64 {
        self.delivered + self.failed_again + self.no_plugin
    }
}

/// Replays the entries in `store` (only `plugin`'s, if given) that are
/// there when it starts, in id order, one at a time: `deliver(plugin,
/// event)` gives the outcome, or `None` when that plugin is not loaded.
/// `progress(done, total)` is called once before the first entry (with
/// `done` 0) and after each.
///
/// # Errors
///
/// Reading or writing the store failed; the entries delivered but not yet
/// removed stay in it.
pub(crate) async fn replay<F, Fut>(
    store: &DeadLetters,
    plugin: Option<&str>,
    mut deliver: F,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport, DeadLetterError>
where
    F: FnMut(String, Event) -> Fut,
    Fut: Future<Output = Option<Outcome>>,
{
    let up_to = store.last_id().await?;
    let total = store.count_up_to(plugin, up_to).await?;
    let mut report = ReplayReport::default();
    let mut changes = Changes::default();
    let mut after = 0;
    progress(0, total);
    loop {
        let page = store.page(plugin, after, up_to, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for entry in page {
            match Event::from_json(&entry.event_json) {
                Err(err) => {
                    report.failed_again += 1;
                    changes.failed(FailedAgain {
                        id: entry.id,
                        class: FailureClass::Returned.as_str().to_owned(),
                        error: format!("the stored event no longer reads as an event: {err}"),
                        at: timestamp_now(),
                    });
                }
                Ok(event) => match deliver(entry.plugin, event).await {
                    None => report.no_plugin += 1,
                    Some(Outcome { result: Ok(()), .. }) => {
                        report.delivered += 1;
                        changes.removed(entry.id);
                    }
                    Some(Outcome {
                        result: Err(failure),
                        ..
                    }) => {
                        report.failed_again += 1;
                        changes.failed(FailedAgain {
                            id: entry.id,
                            class: failure.class.as_str().to_owned(),
                            error: failure.message,
                            at: timestamp_now(),
                        });
                    }
                },
            }
            progress(report.total(), total);
            if changes.due() {
                changes.write(store).await?;
            }
        }
    }
    changes.write(store).await?;
    Ok(report)
}

/// The store's changes not yet written.
#[derive(Default)]
struct Changes {
    removed: Vec<i64>,
    failed: Vec<FailedAgain>,
    /// When the oldest of them was made.
    since: Option<Instant>,
}

impl Changes {
    fn removed(&mut self, id: i64) {
        self.removed.push(id);
        self.since.get_or_insert_with(Instant::now);
    }

    fn failed(&mut self, entry: FailedAgain) {
        self.failed.push(entry);
        self.since.get_or_insert_with(Instant::now);
    }

    fn due(&self) -> bool {
        self.removed.len() + self.failed.len() >= BATCH as usize
            || self
                .since
                .is_some_and(|since| since.elapsed() >= FLUSH_AFTER)
    }

    async fn write(&mut self, store: &DeadLetters) -> Result<(), DeadLetterError> {
        store.settle(&self.removed, &self.failed).await?;
        self.removed.clear();
        self.failed.clear();
        self.since = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::delivery::dead_letters::NewDeadLetter;
    use crate::Failure;

    fn entry(plugin: &str, event_json: &str) -> NewDeadLetter {
        NewDeadLetter {
            plugin: plugin.to_owned(),
            plugin_version: "v1".to_owned(),
            event_id: "e".to_owned(),
            event_type: "ProfilingStarted".to_owned(),
            event_json: event_json.to_owned(),
            class: "error".to_owned(),
            attempts: 1,
            first_failed_at: "2026-01-01T00:00:00.000Z".to_owned(),
            last_failed_at: "2026-01-01T00:00:00.000Z".to_owned(),
            last_error: "HTTP 400".to_owned(),
        }
    }

    fn event_json(seq: u64) -> String {
        format!(
            r#"{{"event_id": "e{seq}", "event_type": "ProfilingStarted",
                "metadata": {{"table": "t", "seq": {seq}}}}}"#
        )
    }

    fn outcome(result: Result<(), Failure>) -> Option<Outcome> {
        Some(Outcome {
            result,
            version: Arc::from("v2"),
            latency: Duration::ZERO,
        })
    }

    fn seq(event: &Event) -> u64 {
        let metadata: serde_json::Value = serde_json::from_str(&event.metadata).unwrap();
        metadata["seq"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn delivered_entries_go_failed_ones_stay_and_unloaded_plugins_wait() {
        let store = DeadLetters::in_memory().await.unwrap();
        store
            .add(&[
                entry("ok", &event_json(1)),
                entry("fails", &event_json(2)),
                entry("gone", &event_json(3)),
                entry("ok", &event_json(4)),
            ])
            .await
            .unwrap();
        let mut calls = Vec::new();
        let mut steps = Vec::new();
        let report = replay(
            &store,
            None,
            |plugin, event| {
                calls.push((plugin.clone(), seq(&event)));
                async move {
                    match plugin.as_str() {
                        "ok" => outcome(Ok(())),
                        "fails" => outcome(Err(Failure {
                            class: FailureClass::Timeout,
                            retryable: true,
                            message: "took too long".to_owned(),
                        })),
                        _ => None,
                    }
                }
            },
            &mut |done, total| steps.push((done, total)),
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            ReplayReport {
                delivered: 2,
                failed_again: 1,
                no_plugin: 1
            }
        );
        assert_eq!(
            calls,
            [
                ("ok".to_owned(), 1),
                ("fails".to_owned(), 2),
                ("gone".to_owned(), 3),
                ("ok".to_owned(), 4)
            ]
        );
        assert_eq!(steps, [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]);
        let left = store.list(None).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.plugin.as_str()).collect::<Vec<_>>(),
            ["fails", "gone"]
        );
        let failed = &left[0];
        assert_eq!(
            (
                failed.class.as_str(),
                failed.attempts,
                failed.last_error.as_str()
            ),
            ("timeout", 2, "took too long")
        );
        assert_eq!(failed.first_failed_at, "2026-01-01T00:00:00.000Z");
        assert!(failed.last_failed_at > failed.first_failed_at);
        assert_eq!(
            (
                left[1].attempts,
                left[1].class.as_str(),
                left[1].last_error.as_str()
            ),
            (1, "error", "HTTP 400")
        );
    }

    #[tokio::test]
    async fn only_the_plugins_entries_are_replayed() {
        let store = DeadLetters::in_memory().await.unwrap();
        store
            .add(&[entry("a", &event_json(1)), entry("b", &event_json(2))])
            .await
            .unwrap();
        let mut plugins = Vec::new();
        let report = replay(
            &store,
            Some("b"),
            |plugin, _| {
                plugins.push(plugin);
                async { outcome(Ok(())) }
            },
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!((report.delivered, report.total()), (1, 1));
        assert_eq!(plugins, ["b"]);
        assert_eq!(store.count(Some("a")).await.unwrap(), 1);
        assert_eq!(store.count(None).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_entry_that_no_longer_parses_fails_again_without_a_delivery() {
        let store = DeadLetters::in_memory().await.unwrap();
        store.add(&[entry("a", "[1, 2]")]).await.unwrap();
        let report = replay(
            &store,
            None,
            |_, _| async { panic!("nothing to deliver") },
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(report.failed_again, 1);
        let kept = &store.list(None).await.unwrap()[0];
        assert_eq!((kept.class.as_str(), kept.attempts), ("error", 2));
        assert!(
            kept.last_error.contains("event is not a JSON object"),
            "{}",
            kept.last_error
        );
    }

    #[tokio::test]
    async fn many_entries_are_replayed_across_batches_in_id_order() {
        let store = DeadLetters::in_memory().await.unwrap();
        let entries: Vec<_> = (1..=250).map(|n| entry("a", &event_json(n))).collect();
        store.add(&entries).await.unwrap();
        let mut seqs = Vec::new();
        let report = replay(
            &store,
            None,
            |_, event| {
                seqs.push(seq(&event));
                async { outcome(Ok(())) }
            },
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(report.delivered, 250);
        assert_eq!(seqs, (1..=250).collect::<Vec<_>>());
        assert_eq!(store.count(None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn entries_added_during_a_replay_wait_for_the_next() {
        let store = DeadLetters::in_memory().await.unwrap();
        store.add(&[entry("a", &event_json(1))]).await.unwrap();
        let report = replay(
            &store,
            None,
            |_, _| {
                let store = store.clone();
                async move {
                    store.add(&[entry("a", &event_json(2))]).await.unwrap();
                    outcome(Ok(()))
                }
            },
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(report.delivered, 1);
        assert_eq!(store.count(None).await.unwrap(), 1);
    }
}
