"""OpenTelemetry: one span per request, exported over OTLP/HTTP when `[telemetry]` asks.

`otlp.py` encodes, `spans.py` maps a finished exchange to a span, `exporter.py` batches and
sends. Off (the default), none of it is imported on the request path.
"""
