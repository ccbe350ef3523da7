//! The exact account a fault scenario ends with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// What became of every published message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Messages published and confirmed by the broker.
    pub published: usize,
    /// Distinct ids whose handler succeeded.
    pub handled: usize,
    /// Successful handler runs beyond the first per id.
    pub duplicates: usize,
    /// Distinct ids in the parking queue.
    pub parked: usize,
    /// Messages still in the work queue or a delay tier.
    pub queued: usize,
    /// Ids found nowhere: must be 0.
    pub lost: usize,
    /// Parked ids by park reason.
    pub parked_by_reason: BTreeMap<String, usize>,
}

impl Account {
    /// Builds the account from the published ids, the record file's lines,
    /// the parked `(message id, reason)` pairs and the number still queued.
    pub fn settle(
        published: &[String],
        record: &Record,
        parked: &[(String, String)],
        queued: usize,
    ) -> Account {
        let parked_ids: BTreeSet<&str> = parked.iter().map(|(id, _)| id.as_str()).collect();
        let mut by_reason = BTreeMap::new();
        for (_, reason) in parked {
            *by_reason.entry(reason.clone()).or_insert(0) += 1;
        }
        let accounted = published
            .iter()
            .filter(|id| record.runs(id) > 0 || parked_ids.contains(id.as_str()))
            .count();
        Account {
            published: published.len(),
            handled: record.distinct(),
            duplicates: record.duplicates(),
            parked: parked_ids.len(),
            queued,
            lost: published.len().saturating_sub(accounted + queued),
            parked_by_reason: by_reason,
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {} | handled {} | duplicates {} | parked {} | still queued {} | lost {}",
            self.published, self.handled, self.duplicates, self.parked, self.queued, self.lost
        )?;
        if !self.parked_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .parked_by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        Ok(())
    }
}

/// The lines `demo.record` appended: id and attempt of each success.
#[derive(Debug, Clone, Default)]
pub struct Record {
    runs: BTreeMap<String, Vec<u32>>,
}

impl Record {
    /// Reads a record file (missing file: nothing recorded).
    pub fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut runs: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for line in text.lines() {
            if let Some((id, attempt)) = line.split_once('\t') {
                runs.entry(id.to_owned())
                    .or_default()
                    .push(attempt.trim().parse().unwrap_or(0));
            }
        }
        Record { runs }
    }

    /// Successful runs of `id`.
    pub fn runs(&self, id: &str) -> usize {
        self.runs.get(id).map_or(0, Vec::len)
    }

    /// The attempts at which `id` succeeded.
    pub fn attempts(&self, id: &str) -> &[u32] {
        self.runs.get(id).map_or(&[], Vec::as_slice)
    }

    /// Distinct ids recorded.
    pub fn distinct(&self) -> usize {
        self.runs.len()
    }

    /// Runs beyond `budget` per id, summed, and the most runs of one id.
    pub fn beyond(&self, budget: usize) -> (usize, usize) {
        let extra = self
            .runs
            .values()
            .map(|r| r.len().saturating_sub(budget))
            .sum();
        let most = self.runs.values().map(Vec::len).max().unwrap_or(0);
        (extra, most)
    }

    /// Runs beyond the first, summed.
    pub fn duplicates(&self) -> usize {
        self.runs.values().map(|r| r.len().saturating_sub(1)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_duplicates_and_parked() {
        let dir = std::env::temp_dir().join(format!("acct-{}", std::process::id()));
        std::fs::write(&dir, "a\t1\nb\t1\nb\t2\n").unwrap();
        let record = Record::read(&dir);
        let published: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let parked = vec![("c".to_owned(), "exhausted".to_owned())];
        let account = Account::settle(&published, &record, &parked, 1);
        assert_eq!(record.beyond(1), (1, 2));
        assert_eq!(record.beyond(2), (0, 2));
        assert_eq!(
            (
                account.handled,
                account.duplicates,
                account.parked,
                account.queued,
                account.lost
            ),
            (2, 1, 1, 1, 1)
        );
        std::fs::remove_file(dir).unwrap();
    }
}
