//! Readers for the `/proc/PID/*` files the dump needs: stat, status, maps, smaps flags, fdinfo,
//! auxv, personality, the fd, task and children lists.
//!
//! Every reader returns [`DumpError`] naming the file, so a failure says what could not be read.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::DumpError;

/// `/proc/PID` of one process.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub pid: i32,
    dir: PathBuf,
}

/// The fields of `/proc/PID/stat` the dump uses (field numbers of proc(5)).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stat {
    /// 3: state letter.
    pub state: char,
    /// 4.
    pub ppid: u32,
    /// 5.
    pub pgrp: u32,
    /// 6.
    pub session: u32,
    /// 26, 27, 28.
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    /// 38.
    pub exit_signal: u32,
    /// 45 to 51.
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// 52: the exit status in `waitpid` form (meaningful for a zombie).
    pub exit_code: u32,
}

/// The fields of `/proc/PID/status` the dump uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub umask: u32,
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    /// SigPnd: the thread's pending mask.
    pub sig_pnd: u64,
    /// ShdPnd: the process's shared pending mask.
    pub shd_pnd: u64,
    pub no_new_privs: bool,
    pub threads: u64,
    /// NSpid: the pid in each PID namespace, from crcli's (proc's) down to the process's own.
    pub nspid: Vec<u32>,
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub inode: u64,
    /// The path column (may be empty, `[heap]`, or end with ` (deleted)`).
    pub path: Vec<u8>,
}

impl MapEntry {
    /// The `/proc/PID/map_files/` name of this mapping.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// The fields of `/proc/PID/fdinfo/N` the dump uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct FdInfo {
    pub pos: u64,
    pub flags: u32,
    pub mnt_id: u32,
}

fn parse_u64(what: &str, s: &str) -> Result<u64, DumpError> {
    s.parse::<u64>().map_err(|_| DumpError::Parse {
        what: what.to_owned(),
        detail: format!("bad number {s:?}"),
    })
}

fn parse_hex(what: &str, s: &str) -> Result<u64, DumpError> {
    u64::from_str_radix(s, 16).map_err(|_| DumpError::Parse {
        what: what.to_owned(),
        detail: format!("bad hex number {s:?}"),
    })
}

impl Proc {
    pub fn new(pid: i32) -> Proc {
        Proc {
            pid,
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// The files of thread `tid` of this process (`/proc/PID/task/TID`); what this reads
    /// (status, comm, stat) is then the thread's own.
    pub fn task(&self, tid: i32) -> Proc {
        Proc {
            pid: self.pid,
            dir: self.dir.join(format!("task/{tid}")),
        }
    }

    /// The path of a file under `/proc/PID`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn what(&self, name: &str) -> String {
        format!("{}/{}", self.dir.display(), name)
    }

    /// Reads a whole file under `/proc/PID`.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, DumpError> {
        std::fs::read(self.path(name)).map_err(|source| DumpError::Io {
            op: format!("read {}", self.what(name)),
            source,
        })
    }

    fn read_string(&self, name: &str) -> Result<String, DumpError> {
        let bytes = self.read(name)?;
        String::from_utf8(bytes).map_err(|_| DumpError::Parse {
            what: self.what(name),
            detail: "not UTF-8".to_owned(),
        })
    }

    /// `readlink /proc/PID/<name>`.
    pub fn readlink(&self, name: &str) -> Result<Vec<u8>, DumpError> {
        std::fs::read_link(self.path(name))
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .map_err(|source| DumpError::Io {
                op: format!("readlink {}", self.what(name)),
                source,
            })
    }

    /// The numeric entries of a directory under `/proc/PID`, sorted.
    fn numeric_dir(&self, name: &str) -> Result<Vec<i32>, DumpError> {
        let rd = std::fs::read_dir(self.path(name)).map_err(|source| DumpError::Io {
            op: format!("list {}", self.what(name)),
            source,
        })?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| DumpError::Io {
                op: format!("list {}", self.what(name)),
                source,
            })?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The thread ids (`/proc/PID/task`).
    pub fn tasks(&self) -> Result<Vec<i32>, DumpError> {
        self.numeric_dir("task")
    }

    /// The open fd numbers (`/proc/PID/fd`), sorted.
    pub fn fds(&self) -> Result<Vec<i32>, DumpError> {
        self.numeric_dir("fd")
    }

    /// The children of every thread (`/proc/PID/task/TID/children`). A thread that ends between
    /// the listing and the read is skipped (it has no children any more).
    pub fn children(&self) -> Result<Vec<i32>, DumpError> {
        let mut out = Vec::new();
        for tid in self.tasks()? {
            let name = format!("task/{tid}/children");
            let text = match self.read_string(&name) {
                Ok(text) => text,
                Err(DumpError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        || source.raw_os_error() == Some(libc::ESRCH) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            for word in text.split_whitespace() {
                out.push(parse_u64(&self.what(&name), word)? as i32);
            }
        }
        Ok(out)
    }

    /// `/proc/PID/stat`.
    pub fn stat(&self) -> Result<Stat, DumpError> {
        let text = self.read_string("stat")?;
        let what = self.what("stat");
        let close = text.rfind(')').ok_or_else(|| DumpError::Parse {
            what: what.clone(),
            detail: "no ')' after comm".to_owned(),
        })?;
        let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
        // fields[0] is field 3 of proc(5).
        let field = |n: usize| -> Result<&str, DumpError> {
            fields.get(n - 3).copied().ok_or_else(|| DumpError::Parse {
                what: what.clone(),
                detail: format!("no field {n}"),
            })
        };
        let num = |n: usize| -> Result<u64, DumpError> { parse_u64(&what, field(n)?) };
        Ok(Stat {
            state: field(3)?.chars().next().unwrap_or('?'),
            ppid: num(4)? as u32,
            pgrp: num(5)? as u32,
            session: num(6)? as u32,
            start_code: num(26)?,
            end_code: num(27)?,
            start_stack: num(28)?,
            exit_signal: num(38)? as u32,
            start_data: num(45)?,
            end_data: num(46)?,
            start_brk: num(47)?,
            arg_start: num(48)?,
            arg_end: num(49)?,
            env_start: num(50)?,
            env_end: num(51)?,
            exit_code: num(52)? as u32,
        })
    }

    /// `/proc/PID/status`.
    pub fn status(&self) -> Result<Status, DumpError> {
        let text = self.read_string("status")?;
        let what = self.what("status");
        let mut st = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let ids = |v: &str| -> Result<[u32; 4], DumpError> {
                let mut out = [0u32; 4];
                let words: Vec<&str> = v.split_whitespace().collect();
                if words.len() != 4 {
                    return Err(DumpError::Parse {
                        what: what.clone(),
                        detail: format!("bad id line {line:?}"),
                    });
                }
                for (o, w) in out.iter_mut().zip(words) {
                    *o = parse_u64(&what, w)? as u32;
                }
                Ok(out)
            };
            match key {
                "Umask" => {
                    st.umask = u32::from_str_radix(value, 8).map_err(|_| DumpError::Parse {
                        what: what.clone(),
                        detail: format!("bad umask {value:?}"),
                    })?
                }
                "Uid" => st.uids = ids(value)?,
                "Gid" => st.gids = ids(value)?,
                "Groups" => {
                    st.groups = value
                        .split_whitespace()
                        .map(|w| parse_u64(&what, w).map(|g| g as u32))
                        .collect::<Result<_, _>>()?
                }
                "CapInh" => st.cap_inh = parse_hex(&what, value)?,
                "CapPrm" => st.cap_prm = parse_hex(&what, value)?,
                "CapEff" => st.cap_eff = parse_hex(&what, value)?,
                "CapBnd" => st.cap_bnd = parse_hex(&what, value)?,
                "CapAmb" => st.cap_amb = parse_hex(&what, value)?,
                "SigPnd" => st.sig_pnd = parse_hex(&what, value)?,
                "ShdPnd" => st.shd_pnd = parse_hex(&what, value)?,
                "NoNewPrivs" => st.no_new_privs = value == "1",
                "Threads" => st.threads = parse_u64(&what, value)?,
                "NSpid" => {
                    st.nspid = value
                        .split_whitespace()
                        .map(|w| parse_u64(&what, w).map(|p| p as u32))
                        .collect::<Result<_, _>>()?
                }
                _ => {}
            }
        }
        Ok(st)
    }

    /// `/proc/PID/maps`.
    pub fn maps(&self) -> Result<Vec<MapEntry>, DumpError> {
        let text = self.read("maps")?;
        let what = self.what("maps");
        let mut out = Vec::new();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.push(parse_maps_line(line).ok_or_else(|| DumpError::Parse {
                what: what.clone(),
                detail: format!("bad line {:?}", String::from_utf8_lossy(line)),
            })?);
        }
        Ok(out)
    }

    /// The `VmFlags` of every mapping in `/proc/PID/smaps`, by start address.
    pub fn smaps_vmflags(&self) -> Result<Vec<(u64, Vec<String>)>, DumpError> {
        use std::io::BufRead;
        // Streamed line by line: smaps is ~1 KiB per mapping, too big to hold for a process
        // with many mappings.
        let what = self.what("smaps");
        let file = std::fs::File::open(self.path("smaps")).map_err(|source| DumpError::Io {
            op: format!("read {what}"),
            source,
        })?;
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
        let mut out = Vec::new();
        let mut current: Option<u64> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| DumpError::Io {
                    op: format!("read {what}"),
                    source,
                })?;
            if n == 0 {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if let Some(rest) = text.strip_prefix(b"VmFlags:") {
                if let Some(start) = current.take() {
                    let flags = String::from_utf8_lossy(rest)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    out.push((start, flags));
                }
            } else if let Some(entry) = parse_maps_line(text) {
                current = Some(entry.start);
            }
        }
        Ok(out)
    }

    /// `/proc/PID/fdinfo/FD`.
    pub fn fdinfo(&self, fd: i32) -> Result<FdInfo, DumpError> {
        let name = format!("fdinfo/{fd}");
        let text = self.read_string(&name)?;
        let what = self.what(&name);
        let mut info = FdInfo::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "pos" => info.pos = parse_u64(&what, value)?,
                "flags" => {
                    info.flags = u32::from_str_radix(value, 8).map_err(|_| DumpError::Parse {
                        what: what.clone(),
                        detail: format!("bad flags {value:?}"),
                    })?
                }
                "mnt_id" => info.mnt_id = parse_u64(&what, value)? as u32,
                _ => {}
            }
        }
        Ok(info)
    }

    /// `/proc/PID/auxv` as words.
    pub fn auxv(&self) -> Result<Vec<u64>, DumpError> {
        let bytes = self.read("auxv")?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// `/proc/PID/personality`.
    pub fn personality(&self) -> Result<u32, DumpError> {
        let text = self.read_string("personality")?;
        Ok(parse_hex(&self.what("personality"), text.trim())? as u32)
    }

    /// `/proc/PID/comm` without the newline.
    pub fn comm(&self) -> Result<Vec<u8>, DumpError> {
        let mut bytes = self.read("comm")?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        Ok(bytes)
    }
}

/// Parses one line of `/proc/PID/maps`.
pub(crate) fn parse_maps_line(line: &[u8]) -> Option<MapEntry> {
    let text = line;
    let mut rest = text;
    let mut next_field = || -> Option<&[u8]> {
        let start = rest.iter().position(|&b| b != b' ')?;
        rest = &rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let field = &rest[..end];
        rest = &rest[end..];
        Some(field)
    };
    let range = std::str::from_utf8(next_field()?).ok()?;
    let perms = next_field()?;
    let offset = std::str::from_utf8(next_field()?).ok()?;
    let _dev = next_field()?;
    let inode = std::str::from_utf8(next_field()?).ok()?;
    let (start, end) = range.split_once('-')?;
    if perms.len() != 4 {
        return None;
    }
    let path_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path: rest[path_start..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let e = parse_maps_line(b"7f1c2a000000-7f1c2a022000 r--p 00001000 fe:01 1315  /usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!(e.start, 0x7f1c2a000000);
        assert_eq!(e.end, 0x7f1c2a022000);
        assert!(e.read && !e.write && !e.exec && !e.shared);
        assert_eq!(e.offset, 0x1000);
        assert_eq!(e.inode, 1315);
        assert_eq!(e.path, b"/usr/lib/x86_64-linux-gnu/libc.so.6");
        let e = parse_maps_line(
            b"7ffd1000-7ffd2000 rw-s 00000000 00:01 4242                       /dev/zero (deleted)",
        )
        .unwrap();
        assert!(e.shared && e.write);
        assert_eq!(e.path, b"/dev/zero (deleted)");
        let e = parse_maps_line(b"55d000000000-55d000021000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(e.path, b"");
        let e =
            parse_maps_line(b"1000-2000 rw-p 00000000 00:00 0                          /tmp/a b")
                .unwrap();
        assert_eq!(e.path, b"/tmp/a b");
        assert!(parse_maps_line(b"garbage").is_none());
        assert!(parse_maps_line(b"").is_none());
    }
}
