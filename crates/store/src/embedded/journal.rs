//! The journal: an append-only, checksummed log of committed writes, the embedded store's unit
//! of durability.
//!
//! A write is acknowledged once its record is in the journal and the journal is fsynced. The
//! SQLite tables are built from the journal afterwards (`applier.rs`), in large transactions;
//! records stay in the journal until SQLite holds them durably.
//!
//! On disk: `journal/<first revision, 20 digits>.log` segment files. Each record is
//! `u32 payload length | u32 CRC-32 of the payload | payload`, with the payload
//! `i64 revision | u8 kind | i64 create_rev | i64 version | i64 prev_rev | u32 key length | key |
//! u32 value length | value | i64 time | u32 note length | note` (little endian). Records of
//! kinds 1 and 2 (put, delete; written before changes carried a time and a note) end after the
//! value; kinds 3 and 4 are the same with the time and note.
//!
//! A segment's valid records carry consecutive revisions starting at its name; the first
//! record that is torn, fails its checksum or breaks the sequence ends the segment. That covers
//! both a crash in the middle of an append (the torn record was never acknowledged) and
//! recycled segments: segments SQLite no longer needs are kept as spares and reused, because
//! overwriting existing blocks makes `fdatasync` several times cheaper than growing a file
//! (the file size, a metadata change, must then be synced too). Stale records left in a
//! recycled file carry older revisions, so they always end the sequence. Segments must chain:
//! one that does not start where the previous one ended is corruption, and the store refuses
//! to open.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{EventKind, Revision, StoreError};

/// A new segment is started once the current one exceeds this size.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// Applied segments kept for reuse instead of being deleted.
const MAX_SPARE_SEGMENTS: usize = 2;

const SPARE_PREFIX: &str = "spare-";

/// Largest payload a record may have (a maximal key and value plus the fixed fields).
const MAX_PAYLOAD_BYTES: usize =
    crate::MAX_KEY_BYTES + crate::MAX_VALUE_BYTES + crate::MAX_NOTE_BYTES + 64;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_PUT_NOTED: u8 = 3;
const KIND_DELETE_NOTED: u8 = 4;

/// One committed write as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: String,
    /// Empty for a deletion.
    pub value: Bytes,
    pub create_revision: Revision,
    pub version: i64,
    /// Revision of the key's previous log row (0 if none).
    pub prev_revision: Revision,
    /// When the write was committed (milliseconds since the Unix epoch; 0 if unknown).
    pub time_millis: i64,
    /// The writer's note (who and how).
    pub note: Bytes,
}

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.push(match self.kind {
            EventKind::Put => KIND_PUT_NOTED,
            EventKind::Delete => KIND_DELETE_NOTED,
        });
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.prev_revision.to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&(self.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.value);
        out.extend_from_slice(&self.time_millis.to_le_bytes());
        out.extend_from_slice(&(self.note.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.note);
        let payload_len = (out.len() - start - 8) as u32;
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let mut reader = Cursor { data: payload };
        let revision = reader.i64()?;
        let (kind, noted) = match reader.u8()? {
            KIND_PUT => (EventKind::Put, false),
            KIND_DELETE => (EventKind::Delete, false),
            KIND_PUT_NOTED => (EventKind::Put, true),
            KIND_DELETE_NOTED => (EventKind::Delete, true),
            _ => return None,
        };
        let create_revision = reader.i64()?;
        let version = reader.i64()?;
        let prev_revision = reader.i64()?;
        let key_len = reader.u32()? as usize;
        let key = String::from_utf8(reader.bytes(key_len)?.to_vec()).ok()?;
        let value_len = reader.u32()? as usize;
        let value = Bytes::copy_from_slice(reader.bytes(value_len)?);
        let (time_millis, note) = if noted {
            let time = reader.i64()?;
            let note_len = reader.u32()? as usize;
            (time, Bytes::copy_from_slice(reader.bytes(note_len)?))
        } else {
            (0, Bytes::new())
        };
        reader.data.is_empty().then_some(Record {
            revision,
            kind,
            key,
            value,
            create_revision,
            version,
            prev_revision,
            time_millis,
            note,
        })
    }
}

struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.bytes(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
    }
}

/// The writer's handle on the journal: appends to the newest segment.
pub(super) struct Journal {
    dir: PathBuf,
    file: File,
    len: u64,
    /// Set when a failed append could not be undone; no further writes are accepted.
    poisoned: bool,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

fn segment_path(dir: &Path, first_revision: Revision) -> PathBuf {
    dir.join(format!("{first_revision:020}.log"))
}

/// The segments in `dir`, oldest first, with their first revisions.
pub(super) fn segments(dir: &Path) -> Result<Vec<(Revision, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if let Ok(first) = stem.parse::<Revision>() {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync directory", dir, e))
}

impl Journal {
    /// Opens the journal in `dir` and returns the records after `applied` (those SQLite does
    /// not hold yet), in revision order. Appends continue after the last valid record.
    pub fn open(dir: &Path, applied: Revision) -> Result<(Journal, Vec<Record>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let segments = segments(dir)?;
        let mut records = Vec::new();
        let mut chain: Option<Revision> = None;
        let mut end = None;
        for (first, path) in &segments {
            if let Some(expected_first) = chain
                && *first != expected_first
            {
                return Err(StoreError::Backend(format!(
                    "journal segment {} starts at revision {first}, but the previous one ends at {}",
                    path.display(),
                    expected_first - 1
                )));
            }
            let mut data = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(|e| io_error("cannot read", path, e))?;
            let mut offset = 0usize;
            let mut next = *first;
            while let Some((revision, record, size)) = parse_record(&data[offset..], applied + 1) {
                if revision != next {
                    break;
                }
                records.extend(record);
                next += 1;
                offset += size;
            }
            chain = Some(next);
            end = Some((path.clone(), offset as u64));
        }
        let next = chain.unwrap_or(applied + 1);
        if next != applied + 1 + records.len() as Revision {
            return Err(StoreError::Backend(format!(
                "the journal (up to revision {}) and the database (up to revision {applied}) \
                 do not fit together; refusing to open",
                next - 1
            )));
        }
        let (path, len) = match end {
            Some(end) => end,
            None => (new_segment(dir, next)?, 0),
        };
        recycle_applied_segments(dir, applied)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("cannot open", &path, e))?;
        Ok((
            Journal {
                dir: dir.to_owned(),
                file,
                len,
                poisoned: false,
            },
            records,
        ))
    }

    /// Appends encoded records and makes them durable. On failure nothing of them remains.
    pub fn append(&mut self, encoded: &[u8], next_revision: Revision) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Backend(
                "an earlier journal write failed and could not be undone; restart fleetdb".into(),
            ));
        }
        if self.len >= SEGMENT_BYTES {
            self.rotate(next_revision)?;
        }
        let written = self
            .file
            .write_all_at(encoded, self.len)
            .and_then(|_| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += encoded.len() as u64;
                Ok(())
            }
            Err(e) => {
                // The next append overwrites whatever part of this one reached the file. If
                // the file cannot even be synced, stop accepting writes.
                if self.file.sync_data().is_err() {
                    self.poisoned = true;
                }
                Err(StoreError::Backend(format!("journal write failed: {e}")))
            }
        }
    }

    fn rotate(&mut self, first_revision: Revision) -> Result<(), StoreError> {
        let path = new_segment(&self.dir, first_revision)?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("cannot open", &path, e))?;
        self.len = 0;
        Ok(())
    }
}

/// Makes the segment that starts at `first_revision`: a spare renamed, or a new empty file.
fn new_segment(dir: &Path, first_revision: Revision) -> Result<PathBuf, StoreError> {
    let path = segment_path(dir, first_revision);
    match spares(dir)?.into_iter().next() {
        Some(spare) => std::fs::rename(&spare, &path)
            .map_err(|e| io_error("cannot reuse journal segment", &spare, e))?,
        None => {
            File::create(&path).map_err(|e| io_error("cannot create", &path, e))?;
        }
    }
    sync_dir(dir)?;
    Ok(path)
}

/// Spare segments, ready for reuse.
fn spares(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))? {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPARE_PREFIX)
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Parses one framed record: its revision, the record itself when its revision is at least
/// `wanted_from` (older ones are checked but not decoded), and its size. `None` when the bytes
/// do not start with a whole, intact record.
fn parse_record(data: &[u8], wanted_from: Revision) -> Option<(Revision, Option<Record>, usize)> {
    if data.len() < 8 {
        return None;
    }
    let len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().unwrap());
    if !(8..=MAX_PAYLOAD_BYTES).contains(&len) || data.len() < 8 + len {
        return None;
    }
    let payload = &data[8..8 + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let revision = i64::from_le_bytes(payload[..8].try_into().unwrap());
    if revision < wanted_from {
        return Some((revision, None, 8 + len));
    }
    Record::decode(payload).map(|record| (revision, Some(record), 8 + len))
}

/// Retires segments whose every record is at or below `applied` (SQLite holds them durably):
/// kept as spares up to [`MAX_SPARE_SEGMENTS`], deleted beyond. The newest segment is never
/// retired: the writer appends to it.
pub(super) fn recycle_applied_segments(dir: &Path, applied: Revision) -> Result<(), StoreError> {
    let segments = segments(dir)?;
    let mut spare_count = spares(dir)?.len();
    for pair in segments.windows(2) {
        let (first, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first - 1 > applied {
            break;
        }
        if spare_count < MAX_SPARE_SEGMENTS {
            let spare = dir.join(format!("{SPARE_PREFIX}{first:020}.log"));
            std::fs::rename(path, &spare).map_err(|e| io_error("cannot retire", path, e))?;
            spare_count += 1;
        } else {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("cannot remove", path, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: Revision) -> Record {
        Record {
            revision,
            kind: EventKind::Put,
            key: format!("/k/{revision}"),
            value: Bytes::from(vec![b'v'; revision as usize]),
            create_revision: revision,
            version: 1,
            prev_revision: 0,
            time_millis: 1_700_000_000_000 + revision,
            note: Bytes::from(format!("note {revision}")),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let r = record(42);
        r.encode(&mut buf);
        let parsed = parse_record(&buf, 0).unwrap();
        assert_eq!(parsed, (42, Some(r), buf.len()));
        assert_eq!(parse_record(&buf, 43), Some((42, None, buf.len())));
    }

    #[test]
    fn records_without_time_or_note_still_read() {
        // A put as journals written before changes carried a time and a note hold it.
        let mut payload = Vec::new();
        payload.extend_from_slice(&9i64.to_le_bytes());
        payload.push(KIND_PUT);
        payload.extend_from_slice(&9i64.to_le_bytes());
        payload.extend_from_slice(&1i64.to_le_bytes());
        payload.extend_from_slice(&0i64.to_le_bytes());
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(b"/k");
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(b"v");
        let record = Record::decode(&payload).expect("an old record decodes");
        assert_eq!(record.key, "/k");
        assert_eq!(record.value, Bytes::from_static(b"v"));
        assert_eq!((record.time_millis, record.note.len()), (0, 0));
    }

    #[test]
    fn damaged_records_are_rejected() {
        let mut buf = Vec::new();
        record(7).encode(&mut buf);
        for cut in 0..buf.len() {
            assert!(
                parse_record(&buf[..cut], 0).is_none(),
                "a record cut at {cut} parsed"
            );
        }
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(parse_record(&flipped, 0).is_none());
        assert!(
            parse_record(&[0; 64], 0).is_none(),
            "zeros are not a record"
        );
    }

    fn encoded(revisions: std::ops::RangeInclusive<Revision>) -> Vec<u8> {
        let mut buf = Vec::new();
        for revision in revisions {
            record(revision).encode(&mut buf);
        }
        buf
    }

    #[test]
    fn a_torn_append_is_ignored_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, records) = Journal::open(dir.path(), 0).unwrap();
        assert!(records.is_empty());
        journal.append(&encoded(1..=2), 1).unwrap();
        // A crash in the middle of the next append leaves half a record.
        let torn = encoded(3..=3);
        journal
            .file
            .write_all_at(&torn[..torn.len() / 2], journal.len)
            .unwrap();
        drop(journal);

        let (mut journal, records) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        journal.append(&encoded(3..=3), 3).unwrap();
        drop(journal);
        let (_, records) = Journal::open(dir.path(), 1).unwrap();
        assert_eq!(records, vec![record(2), record(3)]);
    }

    #[test]
    fn recycled_segments_never_replay_stale_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(&encoded(1..=5), 1).unwrap();
        journal.rotate(6).unwrap();
        journal.append(&encoded(6..=6), 6).unwrap();
        // Revisions 1..=5 are applied: their segment becomes a spare, reused for revision 7.
        recycle_applied_segments(dir.path(), 5).unwrap();
        assert_eq!(spares(dir.path()).unwrap().len(), 1);
        journal.rotate(7).unwrap();
        journal.append(&encoded(7..=7), 7).unwrap();
        drop(journal);
        // The reused file still holds stale records 2..=5 after record 7; they must not count.
        let (_, records) = Journal::open(dir.path(), 5).unwrap();
        assert_eq!(records, vec![record(6), record(7)]);
    }

    #[test]
    fn a_missing_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 0).unwrap();
        journal.append(&encoded(1..=3), 1).unwrap();
        journal.rotate(4).unwrap();
        journal.append(&encoded(4..=4), 4).unwrap();
        journal.rotate(5).unwrap();
        journal.append(&encoded(5..=5), 5).unwrap();
        drop(journal);
        std::fs::remove_file(segment_path(dir.path(), 4)).unwrap();
        assert!(matches!(
            Journal::open(dir.path(), 0),
            Err(StoreError::Backend(_))
        ));
    }
}
