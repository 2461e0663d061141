//! Handlers, one module per section of the API reference.

pub(crate) mod chat;
pub(crate) mod datasets;
pub(crate) mod examples;
pub(crate) mod internal;
pub(crate) mod ml_anomaly;
pub(crate) mod ml_classifier;
pub(crate) mod models;
pub(crate) mod projects;
pub(crate) mod rag;
pub(crate) mod runtime;
pub(crate) mod system;
pub(crate) mod vision;

use crate::error::{ApiError, Code};
use crate::AppState;
use axum::http::{StatusCode, Uri};
use llamafarm_core::LlamaFarm;

/// Fallback for unknown routes: 404 `{"detail": "Not Found: /path", "code": "route_not_found"}`.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::with_code(Code::RouteNotFound, format!("Not Found: {}", uri.path()))
}

/// Run blocking core work (filesystem, model loading) off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> llamafarm_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {e}"))),
    }
}

/// Run blocking core work that writes a response body (an export) off the async threads,
/// and stream what it writes, 64 KiB at a time, with at most 8 pieces in flight. An error
/// before the first piece is the response (`{"detail"}` with its status); one after it
/// cuts the body off, so the client sees an incomplete transfer rather than a short file.
pub(crate) async fn stream_blocking<F>(st: &AppState, f: F) -> Result<axum::body::Body, ApiError>
where
    F: FnOnce(LlamaFarm, &mut dyn std::io::Write) -> llamafarm_core::Result<()> + Send + 'static,
{
    use futures::StreamExt;
    type Piece = Result<axum::body::Bytes, std::io::Error>;
    struct ChannelWriter {
        tx: tokio::sync::mpsc::Sender<Piece>,
        buf: Vec<u8>,
        sent: bool,
    }
    impl ChannelWriter {
        fn send(&mut self) -> std::io::Result<()> {
            let piece = axum::body::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(64 << 10)));
            self.tx.blocking_send(Ok(piece)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
            self.sent = true;
            Ok(())
        }
    }
    impl std::io::Write for ChannelWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.buf.extend_from_slice(b);
            if self.buf.len() >= 64 << 10 {
                self.send()?;
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if self.buf.is_empty() {
                Ok(())
            } else {
                self.send()
            }
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(8);
    let lf = st.lf.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx, buf: Vec::with_capacity(64 << 10), sent: false };
        let r = f(lf, &mut w).and_then(|()| std::io::Write::flush(&mut w).map_err(|e| llamafarm_core::Error::internal(format!("sending the body: {e}"))));
        if let Err(e) = &r {
            if w.sent {
                tracing::warn!(error = %e, "a streamed response failed part way; cutting the body off");
                let _ = w.tx.blocking_send(Err(std::io::Error::other("the server failed while writing this body")));
            }
        }
        r
    });
    let Some(first) = rx.recv().await else {
        return match task.await {
            Ok(Ok(())) => Ok(axum::body::Body::empty()),
            Ok(Err(e)) => Err(ApiError::from(e)),
            Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {e}"))),
        };
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    Ok(axum::body::Body::from_stream(futures::stream::once(async move { first }).chain(rest)))
}

/// Run one piece of blocking core work with the library handle, off the async threads:
/// `call(&st, move |lf| lf.project(&ns, &p)?.datasets().list(true)).await?`.
pub(crate) async fn call<T, F>(st: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(LlamaFarm) -> llamafarm_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let lf = st.lf.clone();
    blocking(move || f(lf)).await
}
