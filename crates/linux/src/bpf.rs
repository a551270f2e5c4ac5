//! eBPF cgroup device programs: load one, attach it to a cgroup v2 directory.
//!
//! A small safe wrapper over `bpf(2)` for exactly what a container runtime needs to
//! enforce device rules on cgroup v2: `BPF_PROG_LOAD` of a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program, then `BPF_PROG_ATTACH` with `BPF_F_ALLOW_MULTI` on the cgroup directory,
//! detaching the programs that were attached before. Generating the program is the
//! caller's job (it is plain data: a slice of [`BpfInsn`]).
//!
//! Not here: maps, other program types, BTF, links (`BPF_LINK_CREATE`).

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// Commands, program and attach types, flags: include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// Size of the verifier log buffer requested when a load fails.
const VERIFIER_LOG_SIZE: usize = 64 * 1024;
/// Program ids asked for in the first `BPF_PROG_QUERY`; the kernel reports the real count
/// (with `ENOSPC`) when more are attached.
const QUERY_FIRST_CAPACITY: usize = 8;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct BpfInsn {
    /// Opcode: class, operation and source bits.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    pub regs: u8,
    /// Signed offset (jumps: instructions to skip; memory: byte offset).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl BpfInsn {
    /// Builds an instruction; `dst` and `src` are register numbers 0..=10.
    #[must_use]
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }

    /// The destination register.
    #[must_use]
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register.
    #[must_use]
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }
}

/// Failure of a `bpf(2)` operation on a cgroup device program.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The program has more instructions than `bpf(2)` can take.
    #[error("cgroup device program has {len} instructions, too many to load")]
    ProgramTooLong {
        /// Number of instructions passed.
        len: usize,
    },
    /// `BPF_PROG_LOAD` failed; `log` holds the verifier's explanation when it gave one.
    #[error("failed to load cgroup device program{}", verifier_log_suffix(.log))]
    Load {
        /// The verifier log (empty when the kernel wrote none).
        log: String,
        /// The errno from `bpf(2)`.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_QUERY` on the cgroup failed.
    #[error("failed to query the device programs attached to the cgroup")]
    Query(#[source] io::Error),
    /// `BPF_PROG_ATTACH` failed.
    #[error("failed to attach the device program to the cgroup")]
    Attach(#[source] io::Error),
    /// Opening or detaching a previously attached program failed.
    #[error("failed to detach previous device program {id} from the cgroup")]
    Detach {
        /// Kernel id of the program that stayed attached.
        id: u32,
        /// The errno from `bpf(2)`.
        #[source]
        source: io::Error,
    },
}

fn verifier_log_suffix(log: &str) -> String {
    let log = log.trim();
    if log.is_empty() {
        String::new()
    } else {
        format!(" (verifier log: {log})")
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` bpf_attr prefix for `cmd`,
    // and its exact size is passed, so the kernel reads and writes only inside it; any
    // pointers it holds were set by the callers to buffers that outlive this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps a descriptor that `bpf(2)` just returned.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` was just returned by a successful bpf(2) call that creates a new
    // descriptor, so it is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // An open descriptor is never negative.
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Loads `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program under `license`.
///
/// On failure the load is retried once with the verifier log enabled, so the error says
/// why the program was rejected.
pub fn load_cgroup_device_program(insns: &[BpfInsn], license: &CStr) -> Result<OwnedFd, BpfError> {
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| BpfError::ProgramTooLong { len: insns.len() })?;
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"testudo_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr).and_then(owned_fd) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; VERIFIER_LOG_SIZE];
            attr.log_level = 1;
            attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
            attr.log_buf = log.as_mut_ptr() as u64;
            let retry = sys_bpf(BPF_PROG_LOAD, &mut attr).and_then(owned_fd);
            match retry {
                // Loading with a log succeeded where the plain load failed: keep it.
                Ok(fd) => Ok(fd),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    Err(BpfError::Load {
                        log: String::from_utf8_lossy(&log[..end]).into_owned(),
                        source: first,
                    })
                }
            }
        }
    }
}

/// Ids of the device programs attached to the cgroup directory `cgroup`.
pub fn query_cgroup_device_programs(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, BpfError> {
    let mut ids = vec![0u32; QUERY_FIRST_CAPACITY];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            ..QueryAttr::default()
        };
        match sys_bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel wrote the number attached into prog_cnt: grow and ask again.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(e) => return Err(BpfError::Query(e)),
        }
    }
}

/// Attaches `program` to the cgroup directory `cgroup` as its device filter, replacing the
/// device programs attached before.
///
/// The new program is attached (`BPF_F_ALLOW_MULTI`) before the old ones are detached, so
/// at no moment is the cgroup without a filter: during the switch both apply, and the
/// kernel allows an access only when every attached program allows it.
pub fn attach_cgroup_device_program(
    cgroup: BorrowedFd<'_>,
    program: BorrowedFd<'_>,
) -> Result<(), BpfError> {
    let previous = query_cgroup_device_programs(cgroup)?;
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(program),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map_err(BpfError::Attach)?;
    for id in previous {
        detach_by_id(cgroup, id).map_err(|source| BpfError::Detach { id, source })?;
    }
    Ok(())
}

fn detach_by_id(cgroup: BorrowedFd<'_>, id: u32) -> io::Result<()> {
    let mut get = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    let old = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut get).and_then(owned_fd) {
        Ok(fd) => fd,
        // Detached (and freed) by someone else meanwhile: nothing left to do.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(old.as_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    match sys_bpf(BPF_PROG_DETACH, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_matches_kernel_layout() {
        assert_eq!(size_of::<BpfInsn>(), 8);
        let insn = BpfInsn::new(0x61, 2, 1, 4, -1);
        assert_eq!((insn.dst(), insn.src()), (2, 1));
        assert_eq!(insn.regs, 0x12);
    }

    #[test]
    fn attr_prefixes_match_kernel_offsets() {
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(size_of::<GetFdByIdAttr>(), 12);
    }

    #[test]
    fn load_error_message_includes_verifier_log_only_when_present() {
        let err = BpfError::Load {
            log: "0: R0 !read_ok\n".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            err.to_string(),
            "failed to load cgroup device program (verifier log: 0: R0 !read_ok)"
        );
        let err = BpfError::Load {
            log: String::new(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(err.to_string(), "failed to load cgroup device program");
    }
}
