//! The runtime glue hyper needs on a current-thread runtime.

use std::future::Future;

/// A local executor, so HTTP/2 streams (and connections) run on this
/// thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
