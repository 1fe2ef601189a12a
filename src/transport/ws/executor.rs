//! One connection's operations run with the HTTP guards: subscriptions only, the nesting
//! scan and fragment-expansion bound, one root field, at most
//! `SUBSCRIPTION_MAX_PER_CONNECTION` at once, errors masked as on HTTP, a request id on
//! every log line of the operation; and the `/metrics` gauges of connections and
//! subscriptions.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll},
};

use async_graphql::{
    Data, Executor, Request, Response,
    parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet},
};
use futures::{Stream, StreamExt, stream::BoxStream};

use crate::{
    error::{ErrorCode, coded},
    graphql::{AppSchema, guard},
    transport::execute::selected_operation,
};

/// Runs one connection's operations with the HTTP guards (see the module header).
#[derive(Clone)]
pub(super) struct LiveExecutor {
    pub(super) schema: AppSchema,
    /// This connection's subscriptions now.
    pub(super) active: Arc<AtomicUsize>,
    pub(super) max: usize,
    pub(super) connection: Arc<str>,
}

impl Executor for LiveExecutor {
    async fn execute(&self, _request: Request) -> Response {
        only_subscriptions()
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::error_span!("subscription", request_id = %request_id, connection = %self.connection);
        let name = request.operation_name.clone();
        let refused = |response: Response| futures::stream::once(async { response }).boxed();
        if let Err(message) = guard::check_nesting(&request.query, guard::MAX_NESTING) {
            return refused(error(ErrorCode::GraphqlValidationFailed, message));
        }
        if let Ok(doc) = request.parsed_query() {
            if let Err(message) = guard::check_expansion(doc, guard::MAX_EXPANDED_FIELDS) {
                return refused(error(ErrorCode::GraphqlValidationFailed, message));
            }
            if selected_operation(doc, name.as_deref()) != Some(OperationType::Subscription) {
                return refused(only_subscriptions());
            }
            // The spec's single-root-field rule, which async-graphql does not check: one
            // operation with 500 aliased `productChanged` would hold 500 streams (and
            // every unfiltered permit) as one subscription.
            if root_fields(doc, name.as_deref()) != 1 {
                return refused(error(
                    ErrorCode::GraphqlValidationFailed,
                    "a subscription must select exactly one root field",
                ));
            }
        }
        // A document that does not parse is left to async-graphql to report.
        if self.active.fetch_add(1, SeqCst) >= self.max {
            self.active.fetch_sub(1, SeqCst);
            return refused(error(
                ErrorCode::BadRequest,
                format!(
                    "this connection holds {} subscriptions already (SUBSCRIPTION_MAX_PER_CONNECTION); complete one first",
                    self.max
                ),
            ));
        }
        span.in_scope(|| tracing::info!(operation = ?name, "subscription started"));
        let held = Held {
            active: self.active.clone(),
            _gauge: Gauge::subscription(),
            span: span.clone(),
        };
        let stream = self
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default());
        InSpan {
            inner: stream,
            span,
            request_id,
            _held: held,
        }
        .boxed()
    }
}

/// How many root fields the selected operation has, fragments expanded (counting stops
/// past 2, and at a nesting of fragments no valid document reaches).
fn root_fields(doc: &ExecutableDocument, name: Option<&str>) -> usize {
    fn count(doc: &ExecutableDocument, set: &SelectionSet, depth: usize, n: &mut usize) {
        for item in &set.items {
            if *n > 1 || depth > 32 {
                *n = 2;
                return;
            }
            match &item.node {
                Selection::Field(_) => *n += 1,
                Selection::InlineFragment(f) => {
                    count(doc, &f.node.selection_set.node, depth + 1, n)
                }
                Selection::FragmentSpread(f) => {
                    if let Some(def) = doc.fragments.get(&f.node.fragment_name.node) {
                        count(doc, &def.node.selection_set.node, depth + 1, n);
                    }
                }
            }
        }
    }
    let mut n = 0;
    if let Some(op) = crate::transport::execute::selected(doc, name) {
        count(doc, &op.selection_set.node, 0, &mut n);
    }
    n
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::from_errors(vec![
        coded(code, message).into_server_error(Default::default()),
    ])
}

fn only_subscriptions() -> Response {
    error(
        ErrorCode::BadRequest,
        "only subscriptions are served over WebSocket: send queries and mutations to /graphql by HTTP",
    )
}

/// A subscription's stream, polled inside its span (so the resolvers' log lines carry
/// its request id), with its errors masked as HTTP masks them.
struct InSpan {
    inner: BoxStream<'static, Response>,
    span: tracing::Span,
    request_id: String,
    _held: Held,
}

impl Stream for InSpan {
    type Item = Response;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.inner.poll_next_unpin(cx).map(|item| {
            item.map(|mut response| {
                crate::transport::respond::mask_errors(&mut response.errors, &this.request_id);
                response
            })
        })
    }
}

/// A subscription's place in its connection's count, until it ends.
struct Held {
    active: Arc<AtomicUsize>,
    _gauge: Gauge,
    span: tracing::Span,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.active.fetch_sub(1, SeqCst);
        self.span.in_scope(|| tracing::info!("subscription ended"));
    }
}

/// Open connections and live subscriptions, as `/metrics` gauges.
pub(super) struct Gauge(&'static str);

impl Gauge {
    pub(super) fn open() -> Self {
        crate::metrics::live_gauge("websocket_connections", 1.0);
        Self("websocket_connections")
    }

    fn subscription() -> Self {
        crate::metrics::live_gauge("subscriptions", 1.0);
        Self("subscriptions")
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        crate::metrics::live_gauge(self.0, -1.0);
    }
}
