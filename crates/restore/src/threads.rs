//! The threads of a process in the image: what must hold before a restore creates them. The
//! creation itself (an injected `clone3` with `set_tid` per thread, once the address space is
//! rebuilt) is in the `tracer` module.

use std::collections::HashSet;

use crcli_image::Process;

use crate::error::RestoreError;

/// Checks the thread list of `p`: at least one thread, the first one is the main thread (its
/// id is the pid), thread ids are valid and distinct, every thread has the main thread's
/// extended-state layout (which `tracer::check_xstate` compares with this CPU's). Touches
/// nothing.
pub(crate) fn check(p: &Process) -> Result<(), RestoreError> {
    let Some(main) = p.threads.first() else {
        return Err(RestoreError::Invalid(format!(
            "process {} has no threads",
            p.pid
        )));
    };
    if main.tid != p.pid {
        return Err(RestoreError::Invalid(format!(
            "process {}: its first thread has tid {}, not the pid",
            p.pid, main.tid
        )));
    }
    let mut seen = HashSet::with_capacity(p.threads.len());
    let x = &main.xstate;
    for th in &p.threads {
        if th.xstate.data.len() != x.data.len() || th.xstate.features != x.features {
            return Err(RestoreError::Invalid(format!(
                "thread {} has another extended-state layout ({} bytes, XCR0 {:#x}) than the main thread ({} bytes, XCR0 {:#x})",
                th.tid,
                th.xstate.data.len(),
                th.xstate.features,
                x.data.len(),
                x.features
            )));
        }
        if th.tid == 0 || th.tid > i32::MAX as u32 || th.ns_tid == 0 || th.ns_tid > i32::MAX as u32
        {
            return Err(RestoreError::Invalid(format!(
                "process {}: thread id {} ({} in the tree's PID namespace) is not valid",
                p.pid, th.tid, th.ns_tid
            )));
        }
        if !seen.insert(th.tid) {
            return Err(RestoreError::Invalid(format!(
                "process {}: thread id {} appears twice",
                p.pid, th.tid
            )));
        }
    }
    Ok(())
}
