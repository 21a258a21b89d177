//! Reading a whole prefix page by page at one revision: the loop every caller of
//! [`Store::range`] would otherwise write by hand (carry the revision of the first page, start
//! each page after the last key of the previous one, stop when `more` is false).

use crate::{KeyValue, RangeRequest, Result, Revision, Store};

/// A prefix read page by page, every page at the revision of the first.
///
/// ```ignore
/// let mut scan = Scan::new(&*store, "/registry/core/namespaces/");
/// while let Some(page) = scan.next_page().await? {
///     for kv in page { /* ... */ }
/// }
/// let revision = scan.revision();
/// ```
pub struct Scan<'a> {
    store: &'a dyn Store,
    prefix: String,
    from_key: Option<String>,
    revision: Option<Revision>,
    page_size: usize,
    done: bool,
}

impl<'a> Scan<'a> {
    /// Every key under `prefix`, now, in pages of the store's largest size.
    pub fn new(store: &'a dyn Store, prefix: impl Into<String>) -> Self {
        Self {
            store,
            prefix: prefix.into(),
            from_key: None,
            revision: None,
            page_size: 0,
            done: false,
        }
    }

    /// Reads at `revision` (now when `None`) instead of now.
    pub fn at(mut self, revision: Option<Revision>) -> Self {
        self.revision = revision;
        self
    }

    /// Starts at `key` (inclusive) instead of at the prefix.
    pub fn starting_at(mut self, key: Option<String>) -> Self {
        self.from_key = key;
        self
    }

    /// At most `keys` keys per page (the store may return fewer).
    pub fn page_size(mut self, keys: usize) -> Self {
        self.page_size = keys;
        self
    }

    /// The revision every page is read at: known after the first page.
    pub fn revision(&self) -> Option<Revision> {
        self.revision
    }

    /// Whether the last page was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next page, or `None` once the prefix was read to its end. An empty prefix gives
    /// one empty page (so the revision is known).
    pub async fn next_page(&mut self) -> Result<Option<Vec<KeyValue>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .range(RangeRequest {
                prefix: self.prefix.clone(),
                from_key: self.from_key.take(),
                limit: self.page_size,
                revision: self.revision,
                count: false,
            })
            .await?;
        self.revision = Some(page.revision);
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => self.from_key = Some(after(&last.key)),
            _ => self.done = true,
        }
        Ok(Some(page.kvs))
    }
}

/// The smallest key after `key`: where a read that has seen `key` continues.
pub fn after(key: &str) -> String {
    format!("{key}\0")
}
