//! [`ResponseFuture`]: check with the store, then call the inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use ratelimit_core::{BoxFuture, Decisions};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::{FailurePolicy, Mode, Policy};
use crate::headers::{self, X_RATELIMIT_STATUS};
use crate::service::Answer;
use crate::telemetry::{Fallback, Outcome};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        Checking {
            check: BoxFuture<'static, Answer>,
            // Boxed: only stores that wait take this path, and it keeps the
            // future small for the synchronous one.
            pending: Option<Box<(S, Request<B>)>>,
            shared: Arc<Policy>,
        },
        Calling {
            #[pin]
            future: F,
            after: After,
        },
        Respond {
            response: Option<Response<Bytes>>,
        },
    }
}

/// What to add to the inner service's response.
enum After {
    Nothing,
    /// The decision's headers; `true` when the in-process fallback made it.
    Headers(Arc<Policy>, Decisions, bool),
    Degraded,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn call(mut inner: S, request: Request<B>) -> Self {
        Self::calling(inner.call(request), After::Nothing)
    }

    pub(crate) fn respond(response: Response<Bytes>) -> Self {
        Self { state: State::Respond { response: Some(response) } }
    }

    pub(crate) fn checking(
        check: BoxFuture<'static, Answer>,
        inner: S,
        request: Request<B>,
        shared: Arc<Policy>,
    ) -> Self {
        Self { state: State::Checking { check, pending: Some(Box::new((inner, request))), shared } }
    }

    pub(crate) fn decided(answer: Answer, shared: Arc<Policy>, inner: S, request: Request<B>) -> Self {
        Self { state: next_state(answer, shared, inner, request) }
    }

    fn calling(future: S::Future, after: After) -> Self {
        Self { state: State::Calling { future, after } }
    }
}

/// Turns the store's answer into the next state.
fn next_state<S, B>(
    answer: Answer,
    shared: Arc<Policy>,
    mut inner: S,
    mut request: Request<B>,
) -> State<S::Future, S, B>
where
    S: Service<Request<B>>,
{
    let Answer { result, local } = answer;
    let decisions = match result {
        Ok(decisions) => decisions,
        Err(error) => {
            if !local {
                shared.telemetry.store_failed(&shared.policy, &error, false);
            }
            if shared.mode == Mode::Shadow {
                return State::Calling { future: inner.call(request), after: After::Nothing };
            }
            if shared.failure == FailurePolicy::Open {
                shared.telemetry.fell_back(Fallback::Open);
                return State::Calling { future: inner.call(request), after: After::Degraded };
            }
            return State::Respond { response: Some(headers::unavailable()) };
        }
    };
    if local {
        shared.telemetry.fell_back(Fallback::Local);
    }
    let outcome = if decisions.all_allowed() { Outcome::Allowed } else { Outcome::Limited(shared.mode) };
    shared.telemetry.record(outcome, !local);
    match shared.mode {
        Mode::Shadow => State::Calling { future: inner.call(request), after: After::Nothing },
        Mode::Enforce if !decisions.all_allowed() => {
            let (parts, _) = request.into_parts();
            let mut response = headers::limited(&shared, &parts, &decisions);
            if local {
                response.headers_mut().insert(X_RATELIMIT_STATUS, STATUS_LOCAL);
            }
            State::Respond { response: Some(response) }
        }
        Mode::Annotate => {
            request.extensions_mut().insert(decisions.clone());
            State::Calling { future: inner.call(request), after: After::Headers(shared, decisions, local) }
        }
        _ => State::Calling { future: inner.call(request), after: After::Headers(shared, decisions, local) },
    }
}

/// `X-RateLimit-Status` of a request let through unchecked.
const STATUS_DEGRADED: HeaderValue = HeaderValue::from_static("degraded");
/// `X-RateLimit-Status` of a request decided by the in-process fallback.
const STATUS_LOCAL: HeaderValue = HeaderValue::from_static("local");

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking { check, pending, shared } => {
                    let result = ready!(check.as_mut().poll(cx));
                    let (inner, request) = *pending.take().expect("ResponseFuture polled after completion");
                    let next = next_state(result, Arc::clone(shared), inner, request);
                    state.set(next);
                }
                StateProj::Calling { future, after } => {
                    let response = ready!(future.poll(cx))?;
                    let mut response = response.map(ResponseBody::inner);
                    match std::mem::replace(after, After::Nothing) {
                        After::Nothing => {}
                        After::Headers(shared, decisions, local) => {
                            headers::insert_rate_headers(&shared, &decisions, response.headers_mut());
                            if local {
                                response.headers_mut().insert(X_RATELIMIT_STATUS, STATUS_LOCAL);
                            }
                        }
                        After::Degraded => {
                            response.headers_mut().insert(X_RATELIMIT_STATUS, STATUS_DEGRADED);
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Respond { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
            }
        }
    }
}
