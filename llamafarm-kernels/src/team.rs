//! A small team of threads that splits each matmul of a generation with the caller.
//!
//! Decoding one token runs ~120 short matmuls (tens of microseconds each). Handing each
//! to rayon cost more than it saved here: an idle worker goes to sleep between two
//! matmuls and waking it takes a trip through the scheduler, so two threads decoded
//! slower than one. The team's helpers instead spin on a job counter while a generation
//! runs (as llama.cpp's threads do) and park on a condition variable after
//! 3 ms without work, so an idle model costs nothing.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_millis(3);

type Job<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    /// Incremented for each job; helpers run a job once per increment.
    epoch: AtomicU64,
    /// The current job: a pointer to the caller's `&Job` (lifetime erased).
    job: AtomicPtr<()>,
    /// A helper's part panicked.
    panicked: AtomicBool,
    /// Helpers that finished the current job.
    done: AtomicUsize,
    parked: Mutex<usize>,
    wake: Condvar,
    quit: AtomicBool,
}

/// See the module docs. `Team::new(1)` runs everything on the caller.
pub struct Team {
    threads: usize,
    shared: Arc<Shared>,
    handles: Vec<std::thread::JoinHandle<()>>,
    /// One job at a time.
    turn: Mutex<()>,
}

impl Team {
    /// A team of `threads` (the caller counts as one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.clamp(1, 64);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            panicked: AtomicBool::new(false),
            done: AtomicUsize::new(0),
            parked: Mutex::new(0),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
        });
        // Parts must be numbered 1..k without a gap (a job splits its work into
        // `threads` shares): after a failed spawn the team runs with the helpers it has.
        let mut handles = Vec::with_capacity(threads - 1);
        for part in 1..threads {
            let sh = shared.clone();
            match std::thread::Builder::new().name(format!("lf-llm-{part}")).spawn(move || helper(&sh, part)) {
                Ok(h) => handles.push(h),
                Err(_) => break,
            }
        }
        Self { threads: handles.len() + 1, shared, handles, turn: Mutex::new(()) }
    }

    /// Threads, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(part)` for every `part` in `0..threads()`, part 0 on the caller, and
    /// return when all have finished. A panic in a part is re-raised here.
    pub fn run(&self, f: &Job<'_>) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let sh = &*self.shared;
        // Lifetime erasure: helpers call the job only between the epoch bump
        // below and their `done` increment, and this function does not return before
        // every helper has incremented `done` (also when `f(0)` panics: `Wait`).
        let fref: &Job<'_> = f;
        sh.job.store(&fref as *const &Job<'_> as *mut (), Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::Release);
        if *sh.parked.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            sh.wake.notify_all();
        }
        struct Wait<'a>(&'a Shared, usize);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                let mut spins = 0u32;
                while self.0.done.load(Ordering::Acquire) < self.1 {
                    spins += 1;
                    if spins < 1 << 16 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        let wait = Wait(sh, self.threads - 1);
        f(0);
        drop(wait);
        if sh.panicked.swap(false, Ordering::AcqRel) {
            panic!("a part of a team job panicked");
        }
    }
}

fn helper(sh: &Shared, part: usize) {
    let mut seen = 0u64;
    loop {
        // Spin for the next job, then park.
        let t0 = Instant::now();
        let mut n = 0u32;
        loop {
            if sh.quit.load(Ordering::Acquire) {
                return;
            }
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) && t0.elapsed() > SPIN {
                let mut parked = sh.parked.lock().unwrap_or_else(|p| p.into_inner());
                *parked += 1;
                while sh.epoch.load(Ordering::Acquire) == seen && !sh.quit.load(Ordering::Acquire) {
                    parked = sh.wake.wait_timeout(parked, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
                }
                *parked -= 1;
                continue;
            }
            std::hint::spin_loop();
        }
        // SAFETY: see `Team::run`: the job (and the `&Job` pointing at it) is alive
        // until `done` counts this part.
        let f: &Job<'_> = unsafe { *(sh.job.load(Ordering::Relaxed) as *const &Job<'_>) };
        // A panic in a helper must not leave the caller waiting: count the part anyway.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part))).is_err() {
            sh.panicked.store(true, Ordering::Release);
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A mutable slice that the parts of one [`Team::run`] write at disjoint indices.
pub struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _b: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: parts write disjoint ranges (the callers' contract, see `range`).
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// Wrap `s`.
    pub fn new(s: &'a mut [T]) -> Self {
        Self { ptr: s.as_mut_ptr(), len: s.len(), _b: std::marker::PhantomData }
    }

    /// The elements `r`.
    ///
    /// # Safety
    /// No two live results may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, r: std::ops::Range<usize>) -> &mut [T] {
        assert!(r.start <= r.end && r.end <= self.len, "range out of bounds");
        // SAFETY: in bounds (checked); disjointness is the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.end - r.start) }
    }
}

/// Part `p` of `0..n` split into `parts` nearly equal ranges.
pub fn share(n: usize, parts: usize, p: usize) -> std::ops::Range<usize> {
    let per = n.div_ceil(parts.max(1));
    (p * per).min(n)..((p + 1) * per).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_per_job_and_results_land() {
        let team = Team::new(3);
        assert_eq!(team.threads(), 3);
        let mut out = vec![0usize; 1000];
        for round in 1..200 {
            let d = Disjoint::new(&mut out);
            team.run(&|p| {
                // SAFETY: `share` gives disjoint ranges.
                for x in unsafe { d.range(share(1000, 3, p)) } {
                    *x += round;
                }
            });
        }
        assert!(out.iter().all(|&x| x == (1..200).sum::<usize>()));
        // After parking, the helpers wake for the next job.
        std::thread::sleep(SPIN * 3);
        let hits = AtomicUsize::new(0);
        team.run(&|_| {
            hits.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| team.run(&|p| assert!(p != 0, "caller part fails")))).is_err());
        let single = Team::new(1);
        single.run(&|p| assert_eq!(p, 0));
    }
}
