//! The scheduling priority of the pipeline's threads.
//!
//! Reading, decoding, the operators and the epoch writer run behind the threads that answer
//! queries: each lowers its own priority (raises its nice value) when it starts, and the
//! decode workers a reader starts inherit the reader's. On a machine whose cores ingestion
//! keeps busy, a query then waits for a core no longer than the scheduler's wake-up
//! preemption takes, instead of for a share of a time slice among the ingest threads; when
//! no query runs, ingestion has the cores as before. Linux keeps a nice value per thread;
//! elsewhere this does nothing.

/// The nice value ingest threads add to the process's by default.
pub const DEFAULT_INGEST_NICE: i32 = 10;

/// Lowers the calling thread's priority by `nice` steps (at most to 19); errors are ignored,
/// a thread that cannot change its priority runs at the process's.
pub fn lower_current_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: plain system calls on the calling thread's own id.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).min(19));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_lowers_itself_and_its_children_but_not_the_process() {
        let nice_of_this_thread =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice_of_this_thread();
        let (own, child) = std::thread::spawn(move || {
            lower_current_thread(3);
            let own = nice_of_this_thread();
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        assert_eq!(own, (before + 3).min(19));
        assert_eq!(
            child, own,
            "threads a lowered thread starts inherit its priority"
        );
        assert_eq!(nice_of_this_thread(), before, "other threads keep theirs");
    }
}
