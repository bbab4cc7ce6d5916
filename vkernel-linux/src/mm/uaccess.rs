//! Kernel access to user memory (copyin/copyout): reads and writes at
//! user addresses that demand-map pages their areas allow and break
//! copy-on-write before a write, as Linux's uaccess does, and partial
//! variants for calls that move what they can.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::*;

impl Mm {
    /// The frame behind user page `page` for a kernel access, demand-mapping
    /// it if its area allows that access.
    pub(super) fn frame_for(&mut self, page: u64, write: bool) -> Result<u64, MmError> {
        let (start, vma) = self.find(page).ok_or(MmError::Fault(page))?;
        let ok = if write {
            vma.prot & PROT_WRITE != 0
        } else {
            vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
        };
        if !ok {
            return Err(MmError::Fault(page));
        }
        if write && self.pages.contains_key(&page) {
            self.break_cow(page)?;
        }
        if let Some(&f) = self.pages.get(&page) {
            return Ok(f);
        }
        self.populate(start, &vma, page, write)
    }

    /// Copy from user memory (copyin).
    pub fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MmError> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(MmError::Fault(va))?;
            let page = a & !(PAGE - 1);
            let off = a - page;
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            let f = self.frame_for(page, false)?;
            self.ram
                .read(f + off, &mut buf[done..done + n])
                .map_err(|_| MmError::Fault(a))?;
            done += n;
        }
        Ok(())
    }

    /// Copy to user memory (copyout).
    pub fn write(&mut self, va: u64, buf: &[u8]) -> Result<(), MmError> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(MmError::Fault(va))?;
            let page = a & !(PAGE - 1);
            let off = a - page;
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            let f = self.frame_for(page, true)?;
            self.ram
                .write(f + off, &buf[done..done + n])
                .map_err(|_| MmError::Fault(a))?;
            done += n;
        }
        Ok(())
    }

    /// Write user memory as a tracer does (ptrace's POKE, Linux's
    /// FOLL_FORCE): into a private area even when it is not writable (a
    /// breakpoint in program text), through a private copy of the page,
    /// whose protection stays what it was. Shared areas are written only
    /// when writable.
    pub fn write_force(&mut self, va: u64, buf: &[u8]) -> Result<(), MmError> {
        if self.accessible_len(va, buf.len(), true) == buf.len() {
            return self.write(va, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(MmError::Fault(va))?;
            let page = a & !(PAGE - 1);
            let n = ((PAGE - (a - page)) as usize).min(buf.len() - done);
            let (_, vma) = self.find(page).ok_or(MmError::Fault(a))?;
            let shared = vma.shm.is_some() || vma.file.as_ref().is_some_and(|f| f.shared);
            if vma.prot & PROT_WRITE != 0 || shared || vma.kind == VmaKind::SyscallStubs {
                self.write(a, &buf[done..done + n])?;
            } else {
                // Writable for a moment: the page becomes the area's own
                // copy, then its protection comes back.
                self.protect(page, PAGE, vma.prot | PROT_WRITE)?;
                let r = self.write(a, &buf[done..done + n]);
                self.protect(page, PAGE, vma.prot)?;
                r?;
            }
            done += n;
        }
        Ok(())
    }

    /// Copy from user memory up to the first byte the vproc cannot read;
    /// returns how many bytes were copied (a partial copyin, as Linux's
    /// write(2) of a buffer whose tail is unmapped).
    pub fn read_partial(&mut self, va: u64, buf: &mut [u8]) -> usize {
        let n = self.accessible_len(va, buf.len(), false);
        match self.read(va, &mut buf[..n]) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }

    /// How many bytes from `va` (at most `len`) the vproc's areas allow
    /// reading (`write` false) or writing: the span up to the first byte
    /// outside an area with that permission. Maps nothing.
    pub fn accessible_len(&self, va: u64, len: usize, write: bool) -> usize {
        let end = va.saturating_add(len as u64).min(USER_END);
        let mut cur = va;
        while cur < end {
            let Some((_, v)) = self.find(cur) else {
                break;
            };
            let ok = if write {
                v.prot & PROT_WRITE != 0
            } else {
                v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
            };
            if !ok {
                break;
            }
            cur = v.end;
        }
        (cur.min(end).saturating_sub(va)) as usize
    }

    /// Read `len` bytes into a new vector.
    pub fn read_vec(&mut self, va: u64, len: usize) -> Result<Vec<u8>, MmError> {
        let mut v = vec![0u8; len];
        self.read(va, &mut v)?;
        Ok(v)
    }

    /// Read a u64.
    pub fn read_u64(&mut self, va: u64) -> Result<u64, MmError> {
        let mut b = [0u8; 8];
        self.read(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write a u64.
    pub fn write_u64(&mut self, va: u64, v: u64) -> Result<(), MmError> {
        self.write(va, &v.to_le_bytes())
    }

    /// Read a NUL-terminated string of at most `max` bytes.
    pub fn read_cstr(&mut self, va: u64, max: usize) -> Result<Vec<u8>, MmError> {
        let mut out = Vec::new();
        let mut a = va;
        loop {
            let page = a & !(PAGE - 1);
            let off = a - page;
            let f = self.frame_for(page, false)?;
            let mut chunk = vec![0u8; (PAGE - off) as usize];
            self.ram
                .read(f + off, &mut chunk)
                .map_err(|_| MmError::Fault(a))?;
            if let Some(z) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(MmError::Invalid);
            }
            a = page + PAGE;
        }
    }
}
