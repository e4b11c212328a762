-- The W3C traceparent of the request that wrote an outbox row (NULL when tracing was off):
-- the relay publishes the row later, as a span of that request's trace linked to it.
ALTER TABLE outbox ADD COLUMN traceparent text;
