//! Small pipelines that let I/O and hashing use both cores with bounded
//! memory: [`ReadAhead`] reads (and decompresses) on a helper thread while
//! the caller parses and hashes; [`WriteBehind`] writes on a helper thread
//! while the caller reads and hashes sources. Both, and every other helper
//! thread fed copies of the stream (part hashes, parity output), hold at
//! most `depth` buffers, recycled, whatever the bundle size; [`Worker`] is
//! the one shape of those consumer threads.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Default buffer size and count: 4 × 1 MiB in flight.
pub const CHUNK: usize = 1 << 20;
pub const DEPTH: usize = 4;

/// A helper thread that consumes messages carrying byte buffers and gives
/// each buffer back for reuse when done with it. At most `depth` messages
/// are in flight. Dropping the worker closes its channel and waits for it.
pub struct Worker<M, R> {
    name: &'static str,
    tx: Option<SyncSender<M>>,
    spare: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<R>>,
}

/// How a [`Worker`]'s thread gives a finished buffer back.
#[derive(Debug)]
pub struct Recycler(SyncSender<Vec<u8>>);

impl Recycler {
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.0.try_send(buf);
    }
}

impl<M, R> std::fmt::Debug for Worker<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).finish()
    }
}

impl<M: Send + 'static, R: Send + 'static> Worker<M, R> {
    /// Starts `work` on its own thread; `name` is used in errors.
    pub fn spawn(
        name: &'static str,
        depth: usize,
        work: impl FnOnce(Receiver<M>, Recycler) -> R + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<M>(depth);
        let (recycle, spare) = mpsc::sync_channel::<Vec<u8>>(depth + 2);
        let handle = std::thread::spawn(move || work(rx, Recycler(recycle)));
        Self {
            name,
            tx: Some(tx),
            spare,
            handle: Some(handle),
        }
    }

    /// An empty buffer: one the thread gave back, else a new one.
    pub fn buffer(&self) -> Vec<u8> {
        self.spare.try_recv().unwrap_or_default()
    }

    /// Hands `m` to the thread; false when the thread has stopped.
    pub fn send(&self, m: M) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(m).is_ok())
    }

    /// Closes the channel and waits for the thread's result.
    pub fn join(&mut self) -> io::Result<R> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other(format!("{} panicked", self.name))),
            None => Err(io::Error::other(format!("{} already finished", self.name))),
        }
    }
}

impl<M, R> Drop for Worker<M, R> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A reader that fills buffers from `inner` on its own thread.
#[derive(Debug)]
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R, chunk: usize, depth: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(depth);
        let (recycle, spare) = mpsc::sync_channel::<Vec<u8>>(depth + 2);
        std::thread::spawn(move || loop {
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(chunk, 0);
            let mut got = 0;
            let res = loop {
                if got == buf.len() {
                    break Ok(());
                }
                match inner.read(&mut buf[got..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(got);
            let eof = got == 0;
            if got > 0 && tx.send(Ok(buf)).is_err() {
                return; // the reader went away
            }
            if let Err(e) = res {
                let _ = tx.send(Err(e));
                return;
            }
            if eof {
                return; // dropping tx signals end of stream
            }
        });
        Self {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    let old = std::mem::replace(&mut self.cur, buf);
                    let _ = self.recycle.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What [`WriteBehind`] writes into: a file, or a [`crate::parts::PartWriter`].
pub trait SyncData {
    /// Flushes written data to disk (`fsync` without metadata).
    fn sync_data(&self) -> io::Result<()>;
}

impl SyncData for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl<W: SyncData> SyncData for crate::digest::HashingWriter<W> {
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

/// A file writer that does the writing on its own thread. With
/// `sync_every`, it also flushes written data to disk every that many bytes,
/// so that the final fsync has little left to do.
#[derive(Debug)]
pub struct WriteBehind<W = File> {
    worker: Worker<Vec<u8>, io::Result<W>>,
    buf: Vec<u8>,
    chunk: usize,
}

impl<W: Write + SyncData + Send + 'static> WriteBehind<W> {
    pub fn new(mut file: W, chunk: usize, depth: usize, sync_every: Option<u64>) -> Self {
        let worker = Worker::spawn(
            "writer thread",
            depth,
            move |rx: Receiver<Vec<u8>>, recycler: Recycler| {
                let mut since_sync = 0u64;
                for buf in rx {
                    file.write_all(&buf)?;
                    since_sync += buf.len() as u64;
                    if let Some(every) = sync_every {
                        if since_sync >= every {
                            file.sync_data()?;
                            since_sync = 0;
                        }
                    }
                    recycler.give(buf);
                }
                Ok(file)
            },
        );
        Self {
            worker,
            buf: Vec::with_capacity(chunk),
            chunk,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = self.worker.buffer();
        next.reserve(self.chunk);
        let full = std::mem::replace(&mut self.buf, next);
        if self.worker.send(full) {
            Ok(())
        } else {
            // the writer thread stopped: report its error
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("writer thread stopped")))
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.worker.join()?
    }

    /// Writes what is buffered, waits for the thread, returns the file.
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        self.join()
    }
}

impl<W: Write + SyncData + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_yields_everything_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::new(io::Cursor::new(data.clone()), 4096, 2);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn write_behind_writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&p).unwrap(), 1000, 2, Some(3000));
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        for c in data.chunks(333) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }
}
