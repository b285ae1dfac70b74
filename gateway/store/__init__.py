"""The traffic store: every exchange the gateway sees, written in batches off the request path."""
