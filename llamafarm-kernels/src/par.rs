//! Safe forms of two parallel patterns that need `unsafe` inside: tasks writing disjoint
//! blocks of one matrix ([`Grid`]), and a join for callers outside rayon's pool
//! ([`join_here`]).

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// A row-major matrix cut into cells that parallel tasks write: rows in bands (given by
/// their boundaries), columns in blocks of equal width. Each cell is handed out at most
/// once ([`Grid::cell`] panics on a second claim), so no two live [`Cell`]s overlap.
pub struct Grid<'a, T> {
    ptr: *mut T,
    stride: usize,
    bounds: Vec<usize>,
    width: usize,
    blocks: usize,
    claimed: Vec<AtomicBool>,
    _data: PhantomData<&'a mut [T]>,
}

// SAFETY: cells are disjoint and each is handed out once (see `Grid::cell`), so tasks on
// other threads write disjoint elements, as with `&mut [T]` split in parts.
unsafe impl<T: Send> Sync for Grid<'_, T> {}
// SAFETY: as above; the grid owns its borrow of the data.
unsafe impl<T: Send> Send for Grid<'_, T> {}

impl<'a, T> Grid<'a, T> {
    /// `data` as rows of `stride` elements; band `b` is rows `bounds[b]..bounds[b + 1]`
    /// (`bounds` nondecreasing, its last row inside `data`); column block `c` is columns
    /// `c * width..(c + 1) * width` (all of them inside `stride`).
    pub fn new(data: &'a mut [T], stride: usize, bounds: &[usize], width: usize) -> Self {
        assert!(bounds.windows(2).all(|w| w[0] <= w[1]), "band bounds must not decrease");
        let rows = bounds.last().copied().unwrap_or(0);
        assert!(rows * stride <= data.len(), "bands past the data");
        let blocks = stride.checked_div(width).unwrap_or(0);
        let cells = bounds.len().saturating_sub(1) * blocks;
        Grid {
            ptr: data.as_mut_ptr(),
            stride,
            bounds: bounds.to_vec(),
            width,
            blocks,
            claimed: (0..cells).map(|_| AtomicBool::new(false)).collect(),
            _data: PhantomData,
        }
    }

    /// The cell of band `band` and column block `block`. Panics if that cell was already
    /// handed out, or is outside the grid.
    pub fn cell(&self, band: usize, block: usize) -> Cell<'_, T> {
        assert!(band + 1 < self.bounds.len() && block < self.blocks, "cell outside the grid");
        let claimed = &self.claimed[band * self.blocks + block];
        assert!(!claimed.swap(true, Ordering::AcqRel), "cell ({band}, {block}) handed out twice");
        let rows: Range<usize> = self.bounds[band]..self.bounds[band + 1];
        // SAFETY: in bounds (checked in `new`: the band's rows are inside the data and the
        // block's columns inside a row).
        let ptr = unsafe { self.ptr.add(rows.start * self.stride + block * self.width) };
        Cell { ptr, rows: rows.len(), stride: self.stride, width: self.width, _grid: PhantomData }
    }
}

/// One cell of a [`Grid`]: `rows()` rows of `width` elements, `stride` apart.
pub struct Cell<'g, T> {
    ptr: *mut T,
    rows: usize,
    stride: usize,
    width: usize,
    _grid: PhantomData<&'g mut [T]>,
}

impl<T> Cell<'_, T> {
    /// Rows in the cell.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `i` of the cell. Panics past the last row.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.rows, "row outside the cell");
        // SAFETY: the cell's rows are inside the grid's data and belong to this cell alone.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.stride), self.width) }
    }
}

/// `rayon::join` for callers outside rayon's pool (an HTTP handler, a CLI): `a` runs on
/// the calling thread at once, `b` is offered to the pool, and if no worker has taken
/// `b` by the time `a` is done the caller runs it too. `rayon::join` from outside the
/// pool instead hands both halves to a worker and blocks, so each query paid for
/// waking one or two idle workers before any work began, and the two halves often ran
/// one after the other anyway. Inside the pool this is `rayon::join`.
pub fn join_here<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    if rayon::current_thread_index().is_some() {
        return rayon::join(a, b);
    }
    const PENDING: u8 = 0;
    const RUNNING: u8 = 1;
    const DONE: u8 = 2;
    const TAKEN_BACK: u8 = 3;
    struct Shared {
        state: AtomicU8,
        finished: Mutex<bool>,
        cv: Condvar,
    }
    /// Takes `b` back if no worker started it, else waits for the worker to finish it,
    /// also when `a` panics: `b` borrows this stack frame.
    struct Settle(Arc<Shared>, bool);
    impl Settle {
        fn take_back(&mut self) -> bool {
            self.1 = true;
            if self.0.state.compare_exchange(PENDING, TAKEN_BACK, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return true;
            }
            let mut fin = self.0.finished.lock().unwrap_or_else(|p| p.into_inner());
            while !*fin {
                fin = self.0.cv.wait(fin).unwrap_or_else(|p| p.into_inner());
            }
            false
        }
    }
    impl Drop for Settle {
        fn drop(&mut self) {
            if !self.1 {
                self.take_back();
            }
        }
    }
    struct Job(*mut (dyn FnMut() + Send + 'static));
    // SAFETY: the pointee is `Send`; `Settle` keeps it alive while a worker may use it.
    unsafe impl Send for Job {}

    let mut b = Some(b);
    let mut out: Option<std::thread::Result<B>> = None;
    let mut run = || {
        if let Some(b) = b.take() {
            out = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(b)));
        }
    };
    let ptr: *mut (dyn FnMut() + Send + '_) = &mut run;
    // SAFETY: only the lifetime is erased. The worker calls the closure only after
    // moving the state from PENDING to RUNNING, and this frame does not return (nor
    // unwind, see `Settle`) until such a call has finished.
    let job = Job(unsafe { std::mem::transmute::<*mut (dyn FnMut() + Send + '_), *mut (dyn FnMut() + Send + 'static)>(ptr) });
    let shared = Arc::new(Shared { state: AtomicU8::new(PENDING), finished: Mutex::new(false), cv: Condvar::new() });
    let mut settle = Settle(shared.clone(), false);
    rayon::spawn(move || {
        let job = job;
        if shared.state.compare_exchange(PENDING, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // SAFETY: see above; the closure catches `b`'s panic itself.
            unsafe { (&mut *job.0)() };
            *shared.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
            shared.state.store(DONE, Ordering::Release);
            shared.cv.notify_all();
        }
    });
    let ra = a();
    if settle.take_back() {
        run();
    }
    drop(settle);
    match out {
        Some(Ok(rb)) => (ra, rb),
        Some(Err(p)) => std::panic::resume_unwind(p),
        None => unreachable!("b ran on one side or the other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_cells_are_disjoint_and_handed_out_once() {
        let mut m = vec![0usize; 10 * 6];
        {
            let g = Grid::new(&mut m, 6, &[0, 3, 3, 10], 2);
            use rayon::prelude::*;
            (0..3 * 3).into_par_iter().for_each(|i| {
                let mut c = g.cell(i / 3, i % 3);
                for r in 0..c.rows() {
                    c.row_mut(r).iter_mut().for_each(|v| *v += i + 1);
                }
            });
            assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.cell(0, 0).rows())).is_err());
        }
        for (r, row) in m.chunks(6).enumerate() {
            let band = if r < 3 { 0 } else { 2 };
            for (c, v) in row.iter().enumerate() {
                assert_eq!(*v, band * 3 + c / 2 + 1, "row {r} col {c}");
            }
        }
    }
}
