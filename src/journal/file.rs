//! The journal on disk: segment files of JSON lines (`<first lsn>.log`), an `id` file and a
//! `checkpoint` file (the lsn up to which the database has confirmed everything).
//!
//! One thread owns the files: it writes what actors appended, fsyncs, marks it durable, and
//! deletes segments the database has fully confirmed. A torn last line (a crash mid-write) fails to
//! parse and is cut off; a damaged line elsewhere is skipped and logged.

use super::{Entry, Lsn, Shared, IDLE_TICK};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed and a new one started past this size, so confirmed data can be deleted.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// What a journal held when opened.
pub struct Loaded {
    /// Unconfirmed entries with their size in bytes, in order.
    pub entries: Vec<(Entry, u64)>,
    pub checkpoint: Lsn,
}

struct Current {
    file: File,
    path: PathBuf,
    len: u64,
    last: Lsn,
}

/// The segment files.
pub struct Segments {
    dir: PathBuf,
    id: String,
    current: Option<Current>,
    /// Closed segments and the last lsn each holds.
    closed: Vec<(PathBuf, Lsn)>,
    checkpoint: Lsn,
}

fn segment_first(path: &Path) -> Option<Lsn> {
    path.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()
}

fn sync_dir(dir: &Path) {
    // Makes a created, renamed or removed file's name durable; not every platform supports it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Segments {
    /// Opens (or creates) the journal folder and reads every unconfirmed entry.
    pub fn open(dir: &Path) -> std::io::Result<(Segments, Loaded)> {
        std::fs::create_dir_all(dir)?;
        let id_path = dir.join("id");
        let id = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = hex::encode(rand::random::<[u8; 8]>());
                std::fs::write(&id_path, format!("{id}\n"))?;
                File::open(&id_path)?.sync_all()?;
                sync_dir(dir);
                id
            }
        };
        let checkpoint: Lsn =
            std::fs::read_to_string(dir.join("checkpoint")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut paths: Vec<(Lsn, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| segment_first(&p).map(|f| (f, p)))
            .collect();
        paths.sort();
        let mut entries = Vec::new();
        let mut closed = Vec::new();
        let mut max_lsn = checkpoint;
        let count = paths.len();
        let mut current = None;
        for (i, (_, path)) in paths.into_iter().enumerate() {
            let last_file = i + 1 == count;
            let mut reader = BufReader::new(File::open(&path)?);
            let mut good_len: u64 = 0;
            let mut line = Vec::new();
            let mut seg_last = 0;
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                let complete = line.last() == Some(&b'\n');
                match serde_json::from_slice::<Entry>(&line) {
                    Ok(entry) if complete => {
                        good_len += n as u64;
                        seg_last = seg_last.max(entry.lsn);
                        // A retried write can repeat lines; each lsn counts once.
                        if entry.lsn > max_lsn {
                            max_lsn = entry.lsn;
                            entries.push((entry, n as u64));
                        }
                    }
                    _ if !complete && last_file => break, // torn by a crash: cut off below
                    _ => {
                        good_len += n as u64;
                        tracing::error!(file = %path.display(), "journal: a damaged line was skipped");
                    }
                }
            }
            if last_file {
                let file = OpenOptions::new().append(true).open(&path)?;
                if file.metadata()?.len() != good_len {
                    file.set_len(good_len)?;
                    file.sync_all()?;
                }
                current = Some(Current { file, path, len: good_len, last: seg_last });
            } else {
                closed.push((path, seg_last));
            }
        }
        let entries: Vec<(Entry, u64)> = entries.into_iter().filter(|(e, _)| e.lsn > checkpoint).collect();
        let seg = Segments { dir: dir.to_path_buf(), id, current, closed, checkpoint };
        Ok((seg, Loaded { entries, checkpoint }))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends `buf` (whole lines `first..=last`) and fsyncs. On failure the file is cut back, so a
    /// retry does not leave half a line behind.
    pub fn append(&mut self, buf: &[u8], first: Lsn, last: Lsn) -> std::io::Result<()> {
        if self.current.as_ref().is_none_or(|c| c.len >= SEGMENT_BYTES) {
            if let Some(c) = self.current.take() {
                c.file.sync_all()?;
                self.closed.push((c.path, c.last));
            }
            let path = self.dir.join(format!("{first:020}.log"));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            sync_dir(&self.dir);
            let len = file.metadata()?.len();
            self.current = Some(Current { file, path, len, last: 0 });
        }
        let Some(c) = self.current.as_mut() else {
            return Err(std::io::Error::other("no journal segment"));
        };
        let result = c.file.write_all(buf).and_then(|()| c.file.sync_data());
        match result {
            Ok(()) => {
                c.len += buf.len() as u64;
                c.last = c.last.max(last);
                Ok(())
            }
            Err(e) => {
                let _ = c.file.set_len(c.len);
                Err(e)
            }
        }
    }

    /// Records that the database holds everything up to `confirmed`, and deletes closed segments
    /// it wholly covers.
    pub fn release(&mut self, confirmed: Lsn) -> std::io::Result<()> {
        if confirmed <= self.checkpoint {
            return Ok(());
        }
        let tmp = self.dir.join("checkpoint.tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{confirmed}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join("checkpoint"))?;
        self.checkpoint = confirmed;
        let mut removed = false;
        self.closed.retain(|(path, last)| {
            if *last <= confirmed {
                removed |= std::fs::remove_file(path).is_ok();
                false
            } else {
                true
            }
        });
        if removed {
            sync_dir(&self.dir);
        }
        Ok(())
    }
}

/// The file thread: writes and fsyncs what actors appended, marks it durable, deletes what the
/// database confirmed. Ends when the journal is closed and everything is written.
pub fn run(shared: Arc<Shared>, mut segments: Segments) {
    let mut failing = false;
    loop {
        let (buf, first, last, confirmed, closing) = {
            let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.unwritten.is_empty() && !s.closing {
                s = shared.wake_writer.wait_timeout(s, IDLE_TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
            let buf = std::mem::take(&mut s.unwritten);
            let (first, last) = (s.unwritten_first, s.unwritten_last);
            s.unwritten_first = 0;
            (buf, first, last, s.confirmed, s.closing)
        };
        if !buf.is_empty() {
            // Never drop a record: retry until the disk takes it.
            loop {
                match segments.append(&buf, first, last) {
                    Ok(()) => {
                        if failing {
                            tracing::warn!("journal: writing again");
                            failing = false;
                        }
                        break;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(error = %e, "journal: cannot write; retrying");
                            failing = true;
                        }
                        std::thread::sleep(IDLE_TICK);
                    }
                }
            }
            shared.state.lock().unwrap_or_else(|p| p.into_inner()).durable = last;
            shared.durable_tx.send_replace(last);
            shared.wake_drain.notify_one();
        }
        if let Err(e) = segments.release(confirmed) {
            tracing::warn!(error = %e, "journal: cannot record the checkpoint");
        }
        if closing && buf.is_empty() {
            let confirmed = shared.state.lock().unwrap_or_else(|p| p.into_inner()).confirmed;
            let _ = segments.release(confirmed);
            shared.stopped_tx.send_replace(true);
            return;
        }
    }
}
