//! RAM-backed [`Disks`] for tests: failure injection, Busy, and completions held back to be released in any order.

use crate::disk::{DiskError, DiskOp, Disks, ExportInfo};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// One RAM disk.
#[derive(Debug, Clone)]
pub struct MemDisk {
    /// Its export description (`size` is `data.len()`).
    pub info: ExportInfo,
    /// Contents.
    pub data: Vec<u8>,
    /// Flushes done.
    pub flushes: u64,
    /// FUA writes (or write-zeroes) done.
    pub fua_writes: u64,
    /// Trims done.
    pub trims: u64,
}

/// A finished operation not yet handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Owner that submitted it.
    pub owner: u16,
    /// Its tag.
    pub tag: u64,
    /// Result.
    pub result: Result<Vec<u8>, DiskError>,
}

/// RAM disks implementing [`Disks`].
#[derive(Debug, Clone, Default)]
pub struct MemDisks {
    /// The disks, in export order.
    pub disks: Vec<MemDisk>,
    /// Completions ready for `poll_completion`.
    pub ready: VecDeque<Completion>,
    /// While true, completions go to `held` instead of `ready`.
    pub hold: bool,
    /// Completions held back (release them with [`MemDisks::release`]).
    pub held: Vec<Completion>,
    /// The next this many submits return `Busy`.
    pub busy_next: u32,
    /// The next this many submitted operations complete with `Io` (nothing written).
    pub fail_next: u32,
    /// Every submitted operation, in order: (owner, tag, export, offset, kind name).
    pub log: Vec<(u16, u64, usize, u64, &'static str)>,
}

impl MemDisks {
    /// No disks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a zero-filled disk `name` of `size` bytes; returns its id.
    pub fn add(&mut self, name: &str, size: usize, read_only: bool) -> usize {
        let id = self.disks.len();
        self.disks.push(MemDisk {
            info: ExportInfo {
                id,
                name: String::from(name),
                size: size as u64,
                read_only,
                can_flush: true,
                can_fua: true,
                can_trim: true,
            },
            data: vec![0u8; size],
            flushes: 0,
            fua_writes: 0,
            trims: 0,
        });
        id
    }

    /// Moves the held completions to `ready`, in the order of `order`
    /// (indices into `held`; those not named follow in their order).
    pub fn release(&mut self, order: &[usize]) {
        let mut held: Vec<Option<Completion>> = self.held.drain(..).map(Some).collect();
        for &i in order {
            if let Some(c) = held.get_mut(i).and_then(Option::take) {
                self.ready.push_back(c);
            }
        }
        self.ready.extend(held.into_iter().flatten());
    }

    fn run(&mut self, export: usize, offset: u64, op: DiskOp) -> Result<Vec<u8>, DiskError> {
        let disk = self.disks.get_mut(export).ok_or(DiskError::Gone)?;
        let size = disk.data.len() as u64;
        let range = |len: u64| -> Result<core::ops::Range<usize>, DiskError> {
            let end = offset.checked_add(len).ok_or(DiskError::OutOfRange)?;
            if end > size {
                return Err(DiskError::OutOfRange);
            }
            Ok(offset as usize..end as usize)
        };
        match op {
            DiskOp::Read { len } => {
                let r = range(u64::from(len))?;
                Ok(disk.data.get(r).map(<[u8]>::to_vec).unwrap_or_default())
            }
            DiskOp::Write { data, fua } => {
                if disk.info.read_only {
                    return Err(DiskError::ReadOnly);
                }
                let r = range(data.len() as u64)?;
                if let Some(d) = disk.data.get_mut(r) {
                    d.copy_from_slice(&data);
                }
                disk.fua_writes += u64::from(fua);
                Ok(Vec::new())
            }
            DiskOp::WriteZeroes { len, fua } => {
                if disk.info.read_only {
                    return Err(DiskError::ReadOnly);
                }
                let r = range(u64::from(len))?;
                if let Some(d) = disk.data.get_mut(r) {
                    d.fill(0);
                }
                disk.fua_writes += u64::from(fua);
                Ok(Vec::new())
            }
            DiskOp::Trim { len } => {
                if disk.info.read_only {
                    return Err(DiskError::ReadOnly);
                }
                if !disk.info.can_trim {
                    return Err(DiskError::Unsupported);
                }
                let r = range(u64::from(len))?;
                // Discarded contents are unspecified: make them visible as such.
                if let Some(d) = disk.data.get_mut(r) {
                    d.fill(0xdd);
                }
                disk.trims += 1;
                Ok(Vec::new())
            }
            DiskOp::Flush => {
                disk.flushes += 1;
                Ok(Vec::new())
            }
        }
    }
}

impl Disks for MemDisks {
    fn exports(&self) -> Vec<ExportInfo> {
        self.disks.iter().map(|d| d.info.clone()).collect()
    }

    fn submit(
        &mut self,
        owner: u16,
        tag: u64,
        export: usize,
        offset: u64,
        op: DiskOp,
    ) -> Result<(), (DiskError, DiskOp)> {
        if self.busy_next > 0 {
            self.busy_next -= 1;
            return Err((DiskError::Busy, op));
        }
        let kind = match &op {
            DiskOp::Read { .. } => "read",
            DiskOp::Write { .. } => "write",
            DiskOp::Flush => "flush",
            DiskOp::Trim { .. } => "trim",
            DiskOp::WriteZeroes { .. } => "write-zeroes",
        };
        self.log.push((owner, tag, export, offset, kind));
        let result = if self.fail_next > 0 {
            self.fail_next -= 1;
            Err(DiskError::Io)
        } else {
            self.run(export, offset, op)
        };
        let c = Completion { owner, tag, result };
        if self.hold {
            self.held.push(c);
        } else {
            self.ready.push_back(c);
        }
        Ok(())
    }

    fn poll_completion(&mut self, owner: u16) -> Option<(u64, Result<Vec<u8>, DiskError>)> {
        let i = self.ready.iter().position(|c| c.owner == owner)?;
        self.ready.remove(i).map(|c| (c.tag, c.result))
    }
}
