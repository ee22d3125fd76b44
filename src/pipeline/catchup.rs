//! Catching up: a view added to a source that is already running replays the source's
//! history from a reader of its own, while the source's other views go on with the main
//! reader at the source's pace.
//!
//! When a pipeline starts, a view that is neither finished nor failed is *behind* when its
//! frontier does not cover everything the source ever read (`high`) and some other view's
//! does: a view just created, or one that was catching up when Weir stopped. The main reader
//! resumes where the caught-up views are; a second reader replays history for the views that
//! are behind, from the earliest of their frontiers, without the source's rate limit (history
//! was paced when it was first read). The operator thread applies catch-up batches to the
//! views behind only, and main batches to the others. A view joins the main feed as soon as
//! its frontier covers the source's `high`: from then on it skips what it already applied,
//! exactly like a view resuming after a crash. Once every view joined, the catch-up reader
//! stops. A view's frontier is written with its state in every epoch, so kill -9 in the middle
//! of a catch-up resumes it where it was: nothing lost, nothing applied twice.

use crate::operator::ViewOperator;
use crate::source::Frontier;

/// Whether a view still needs input from the source (a view over a view reads the store).
pub fn is_active(view: &ViewOperator) -> bool {
    !view.progress().finished && !view.is_failed() && !view.is_chained()
}

/// For each view: whether it is behind the source and replays history from the catch-up
/// reader. No view is behind when no active view is caught up (then the main reader starts
/// at the earliest frontier, as when every view starts together).
pub fn behind(views: &[ViewOperator], high: &Frontier) -> Vec<bool> {
    let lagging: Vec<bool> = views
        .iter()
        .map(|v| is_active(v) && !v.frontier().covers(high))
        .collect();
    let any_caught_up = views
        .iter()
        .zip(&lagging)
        .any(|(v, lag)| is_active(v) && !lag);
    if any_caught_up {
        lagging
    } else {
        vec![false; views.len()]
    }
}

#[cfg(test)]
mod tests {
    use crate::source::Frontier;

    #[test]
    fn a_frontier_covers_another_split_by_split() {
        let mut high = Frontier::default();
        high.advance(0, 100);
        high.advance(2, 7);
        let mut view = Frontier::default();
        view.advance(0, 100);
        assert!(!view.covers(&high), "split 2 never read");
        view.advance(2, 6);
        assert!(!view.covers(&high));
        view.advance(2, 9);
        view.advance(5, 1);
        assert!(view.covers(&high));
        assert!(view.covers(&Frontier::default()));
    }
}
