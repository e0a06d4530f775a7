//! W3C trace context in event metadata (feature `opentelemetry`): the command's span
//! context goes into each new event's metadata as `traceparent`, and a consumer's span
//! for the event takes it as its parent. Without the feature (or without
//! `tracing-opentelemetry`'s layer in the subscriber) both are no-ops.

use crate::envelope::Metadata;

/// `metadata` with the current span's trace context, unless it carries one already or
/// the current span belongs to no OpenTelemetry trace.
#[cfg(feature = "opentelemetry")]
pub(crate) fn stamp(mut metadata: Metadata) -> Metadata {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if metadata.extra.contains_key(Metadata::TRACEPARENT) {
        return metadata;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return metadata;
    }
    let traceparent =
        format!("00-{}-{}-{:02x}", span_context.trace_id(), span_context.span_id(), span_context.trace_flags().to_u8());
    metadata.extra.insert(Metadata::TRACEPARENT.to_owned(), traceparent.into());
    let state = span_context.trace_state().header();
    if !state.is_empty() {
        metadata.extra.insert(Metadata::TRACESTATE.to_owned(), state.into());
    }
    metadata
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn stamp(metadata: Metadata) -> Metadata {
    metadata
}

/// The remote parent named by the trace context in `metadata`, parsed once per event.
#[cfg(feature = "opentelemetry")]
pub(crate) struct RemoteParent(opentelemetry::trace::SpanContext);

/// Without the feature no event has a remote parent.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) enum RemoteParent {}

/// The remote parent of a consumer's span for an event with `metadata`, when its
/// `traceparent` parses.
#[cfg(feature = "opentelemetry")]
pub(crate) fn remote_parent(metadata: &Metadata) -> Option<RemoteParent> {
    use opentelemetry::trace::TraceState;

    let (trace_id, span_id, flags) = metadata.traceparent().and_then(parse)?;
    let state = metadata
        .extra
        .get(Metadata::TRACESTATE)
        .and_then(serde_json::Value::as_str)
        .and_then(|header| header.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(RemoteParent(opentelemetry::trace::SpanContext::new(trace_id, span_id, flags, true, state)))
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn remote_parent(_: &Metadata) -> Option<RemoteParent> {
    None
}

/// Makes `parent` the parent of `span`.
#[cfg(feature = "opentelemetry")]
pub(crate) fn adopt(span: &tracing::Span, parent: RemoteParent) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    // Fails only when the subscriber has no OpenTelemetry layer: nothing to join then.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent.0));
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn adopt(_: &tracing::Span, parent: RemoteParent) {
    match parent {}
}

/// A `traceparent` of version `00`: trace id, parent span id and flags; `None` when it is
/// malformed or names the invalid (all-zero) trace or span. Stored data: never panics.
#[cfg(feature = "opentelemetry")]
fn parse(
    text: &str,
) -> Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId, opentelemetry::trace::TraceFlags)> {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

    let mut parts = text.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((trace_id, span_id, TraceFlags::new(flags)))
}

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use super::parse;

    #[test]
    fn traceparents_parse_only_when_well_formed() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, span, flags) = parse(good).unwrap();
        assert_eq!(
            format!("{trace}-{span}-{:02x}", flags.to_u8()),
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47ß6-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
